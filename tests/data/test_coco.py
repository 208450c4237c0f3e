"""COCO instances json: category remapping, box conversion, crowd/background handling, image folder rules."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolokit.data.coco import find_coco_image_root, load_coco_annotations, read_coco_json
from yolokit.data.dataset import DetectionDataset, load_data_config
from yolokit.errors import DatasetError

# category ids 7, 1, 3 (unsorted, with gaps) -> classes 0: person (1), 1: car (3), 2: dog (7)
COCO = {
    "images": [
        {"id": 10, "file_name": "b.jpg", "width": 200, "height": 100},
        {"id": 11, "file_name": "a.jpg", "width": 50, "height": 40},
        {"id": 12, "file_name": "c.jpg", "width": 64, "height": 64},
    ],
    "categories": [{"id": 7, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    "annotations": [
        {"id": 1, "image_id": 10, "category_id": 7, "bbox": [20, 10, 40, 30], "iscrowd": 0},
        {"id": 2, "image_id": 10, "category_id": 1, "bbox": [190, 90, 20, 20], "iscrowd": 0},  # clipped
        {"id": 3, "image_id": 10, "category_id": 3, "bbox": [0, 0, 200, 100], "iscrowd": 1},  # crowd region
        {"id": 4, "image_id": 11, "category_id": 3, "bbox": [5, 4, 10, 8], "iscrowd": 0},
        {"id": 5, "image_id": 11, "category_id": 3, "bbox": [5, 4, 0, 8], "iscrowd": 0},  # zero width
        {"id": 6, "image_id": 99, "category_id": 3, "bbox": [5, 4, 10, 8], "iscrowd": 0},  # unknown image
    ],
}


def write_coco(json_path: Path, image_dir: Path, coco: dict = COCO) -> Path:
    for image in coco["images"]:
        path = image_dir / image["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), np.full((image["height"], image["width"], 3), 100, np.uint8))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(coco))
    return json_path


def test_load_coco_annotations_remaps_and_normalises(tmp_path, caplog):
    json_path = write_coco(tmp_path / "instances_val.json", tmp_path / "imgs")
    with caplog.at_level("INFO", logger="yolokit.data.coco"):
        labels, names, category_ids = load_coco_annotations(json_path, tmp_path / "imgs")
    assert names == {0: "person", 1: "car", 2: "dog"} and category_ids == [1, 3, 7]
    assert [Path(x.im_file).name for x in labels] == ["a.jpg", "b.jpg", "c.jpg"]  # sorted by path
    a, b, c = labels
    assert (a.image_id, a.shape, b.image_id, b.shape, c.image_id) == (11, (40, 50), 10, (100, 200), 12)
    assert a.cls.tolist() == [1]
    np.testing.assert_allclose(a.bboxes, [[10 / 50, 8 / 40, 10 / 50, 8 / 40]], rtol=1e-6)
    assert b.cls.tolist() == [2, 0]
    np.testing.assert_allclose(b.bboxes, [[40 / 200, 25 / 100, 40 / 200, 30 / 100],
                                          [195 / 200, 95 / 100, 10 / 200, 10 / 100]], rtol=1e-6)
    assert b.crowd_cls.tolist() == [1] and a.crowd_cls.tolist() == [] and a.crowd_bboxes.shape == (0, 4)
    np.testing.assert_allclose(b.crowd_bboxes, [[0.5, 0.5, 1.0, 1.0]])  # kept apart: never a training target
    assert len(c) == 0 and c.bboxes.shape == (0, 4)  # image without annotations: background
    assert "1 crowd annotations kept as ignore regions" in caplog.text
    assert "skipped annotations: 1 unknown image, 1 empty or invalid box" in caplog.text


def test_boxes_match_pycocotools(tmp_path):
    coco_api = pytest.importorskip("pycocotools.coco")
    json_path = write_coco(tmp_path / "ann.json", tmp_path)
    labels, _, category_ids = load_coco_annotations(json_path, tmp_path)
    api = coco_api.COCO(str(json_path))
    for item in labels:
        h, w = item.shape
        anns = [a for a in api.loadAnns(api.getAnnIds(imgIds=[item.image_id], iscrowd=False)) if a["bbox"][2] > 0]
        ours = [(category_ids[c], *(float(v) for v in box)) for c, box in
                zip(item.cls.tolist(), item.bboxes * [w, h, w, h], strict=True)]
        theirs = []
        for a in anns:
            x, y, bw, bh = a["bbox"]
            x2, y2 = min(x + bw, w), min(y + bh, h)
            theirs.append((a["category_id"], (x + x2) / 2, (y + y2) / 2, x2 - x, y2 - y))
        np.testing.assert_allclose(np.array(ours, dtype=float).reshape(-1, 5),
                                   np.array(theirs, dtype=float).reshape(-1, 5), rtol=1e-5)


def test_yaml_with_split_json_and_dataset(tmp_path):
    write_coco(tmp_path / "annotations" / "instances_val.json", tmp_path / "images" / "val")
    yaml_path = tmp_path / "coco.yaml"
    yaml_path.write_text("path: .\nval: images/val\nval_json: annotations/instances_val.json\n")
    data = load_data_config(yaml_path)
    assert data.names == {0: "person", 1: "car", 2: "dog"} and data.nc == 3
    assert data.coco_category_ids == [1, 3, 7]
    assert data.coco_json == {"val": tmp_path / "annotations" / "instances_val.json"}
    assert data.splits["val"] == [tmp_path / "images" / "val" / n for n in ("a.jpg", "b.jpg", "c.jpg")]
    dataset = DetectionDataset(data, "val", progress=False)
    assert len(dataset) == 3 and dataset.report.instances == 3 and dataset.report.empty == 1
    image, labels = dataset[1]
    assert image.shape == (100, 200, 3) and labels.image_id == 10 and labels.cls.tolist() == [2, 0]


def test_bare_json_finds_images_folder(tmp_path):
    write_coco(tmp_path / "coco" / "annotations" / "instances_val2017.json", tmp_path / "coco" / "images" / "val2017")
    data = load_data_config(tmp_path / "coco" / "annotations" / "instances_val2017.json")
    assert data.yaml_path is None and list(data.splits) == ["val"]
    assert data.splits["val"][0] == tmp_path / "coco" / "images" / "val2017" / "a.jpg"
    assert len(DetectionDataset(data, "val", progress=False)) == 3


def test_image_root_rule_order(tmp_path):
    json_path = write_coco(tmp_path / "ann" / "x.json", tmp_path / "ann" / "images")
    assert find_coco_image_root(json_path, read_coco_json(json_path)) == tmp_path / "ann" / "images"
    write_coco(json_path, tmp_path / "ann")  # the json's own folder wins
    assert find_coco_image_root(json_path, read_coco_json(json_path)) == tmp_path / "ann"
    lonely = tmp_path / "lonely" / "y.json"
    lonely.parent.mkdir()
    lonely.write_text(json.dumps(COCO))
    with pytest.raises(DatasetError, match="cannot find its first image 'b.jpg' in any of"):
        load_data_config(lonely)


def test_missing_image_files_are_skipped(tmp_path):
    write_coco(tmp_path / "ann.json", tmp_path / "images")
    (tmp_path / "images" / "a.jpg").unlink()
    (tmp_path / "d.yaml").write_text("val: images\nval_json: ann.json\nnames: [p, c, d]\n")
    dataset = DetectionDataset(load_data_config(tmp_path / "d.yaml"), "val", progress=False)
    assert [Path(f).name for f in dataset.im_files] == ["b.jpg", "c.jpg"]
    assert dataset.report.corrupt == 1 and "a.jpg: image listed in" in dataset.report.messages[0]
    assert dataset.names == {0: "p", 1: "c", 2: "d"}  # the YAML's names win when the count agrees


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "ann.json:1: JSON syntax error"),
    ('{"images": []}', "expected a COCO json with 'images' and 'categories' lists"),
    ('{"images": [], "categories": []}', "'categories' is empty"),
])
def test_bad_json_errors(tmp_path, content, message):
    (tmp_path / "ann.json").write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_data_config(tmp_path / "ann.json")


def test_names_count_must_match_categories(tmp_path):
    write_coco(tmp_path / "ann.json", tmp_path / "images")
    (tmp_path / "d.yaml").write_text("val: images\nval_json: ann.json\nnames: [p, c]\n")
    with pytest.raises(DatasetError, match="'names' lists 2 classes but the COCO json has 3 categories"):
        load_data_config(tmp_path / "d.yaml")


def test_crowd_regions_are_ignored_in_validation_like_pycocotools(tmp_path):
    """Two confident detections inside a crowd region outrank the one true positive: ignored, AP50 is 1.0; counted
    as false positives (what dropping crowd annotations did), precision at full recall would be 1/3."""
    from yolokit.eval.evaluator import DetectionEvaluator
    from yolokit.eval.validator import labels_to_target

    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 200}],
            "categories": [{"id": 5, "name": "person"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [10, 10, 40, 40], "iscrowd": 0,
                             "area": 1600},
                            {"id": 2, "image_id": 1, "category_id": 5, "bbox": [100, 100, 100, 100], "iscrowd": 1,
                             "area": 10000}]}
    json_path = write_coco(tmp_path / "ann.json", tmp_path, coco)
    (labels,), names, category_ids = load_coco_annotations(json_path, tmp_path)
    target = labels_to_target(labels)
    assert target["iscrowd"].tolist() == [False, True] and len(labels) == 1  # one instance; the crowd is not one
    detections = np.array([[120, 120, 160, 160, 0.95, 0], [150, 110, 190, 180, 0.93, 0], [10, 10, 50, 50, 0.9, 0]])
    evaluator = DetectionEvaluator(names)
    evaluator.update([detections], [target], image_ids=[labels.image_id])
    metrics = evaluator.compute()
    assert metrics.map50 == pytest.approx(1.0) and metrics.num_instances == 1

    coco_eval = pytest.importorskip("pycocotools.cocoeval")
    from pycocotools.coco import COCO

    ground_truth = COCO(str(json_path))
    rows = [{"image_id": 1, "category_id": category_ids[int(c)], "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s}
            for x1, y1, x2, y2, s, c in detections.tolist()]
    evaluation = coco_eval.COCOeval(ground_truth, ground_truth.loadRes(rows), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    np.testing.assert_allclose(metrics.coco_stats, evaluation.stats, rtol=0, atol=1e-12)
