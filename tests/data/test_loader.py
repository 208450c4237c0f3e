"""TrainDataset and the loader: batch contract, determinism (seed, epoch, workers), resume, bad images."""

from __future__ import annotations

import logging
import shutil
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from yolokit.data.dataset import load_data_config
from yolokit.data.labels import label_path_for
from yolokit.data.loader import ResumableSampler, WorkerSeeder, build_dataloader, build_val_dataloader
from yolokit.data.synth import make_synthetic_dataset
from yolokit.data.train_dataset import TrainDataset, rect_batch_shapes
from yolokit.errors import ConfigError, DatasetError

STILL = {"mosaic": 0.0, "translate": 0.0, "scale": 0.0, "fliplr": 0.0, "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0}


@pytest.fixture(scope="module")
def synth_yaml(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth") / "ds", n_train=8, n_val=3, imgsz=64, seed=1)


def copy_dataset(synth_yaml: Path, tmp_path: Path) -> Path:
    shutil.copytree(synth_yaml.parent, tmp_path / "ds")
    yaml_path = tmp_path / "ds" / "data.yaml"
    yaml_path.write_text(f"path: {tmp_path / 'ds'}\ntrain: images/train\nval: images/val\n"
                         f"names: [rectangle, ellipse, triangle]\n")
    return yaml_path


def epoch_batches(loader, epoch: int) -> list[dict]:
    loader.set_epoch(epoch)
    return list(loader)


def assert_same_batches(first: list[dict], second: list[dict]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert a.keys() == b.keys() and a["im_file"] == b["im_file"]
        for key in ("img", "cls", "bboxes", "batch_idx"):
            assert torch.equal(a[key], b[key]), key


def loader_for(synth_yaml: Path, workers: int = 0, seed: int = 0, batch: int = 4, **kwargs):
    dataset = TrainDataset(load_data_config(synth_yaml), "train", 64, True, kwargs.pop("hyp", None), progress=False,
                           **kwargs)
    return build_dataloader(dataset, batch=batch, workers=workers, shuffle=True, seed=seed)


def test_batch_follows_the_contract(synth_yaml):
    loader = loader_for(synth_yaml)
    batch = next(iter(loader))
    assert batch["img"].dtype == torch.uint8 and batch["img"].shape == (4, 3, 64, 64)
    n = batch["cls"].shape[0]
    assert n > 0 and batch["cls"].shape == (n, 1) and batch["bboxes"].shape == (n, 4)
    assert batch["batch_idx"].shape == (n,)
    assert batch["cls"].dtype == batch["bboxes"].dtype == batch["batch_idx"].dtype == torch.float32
    assert float(batch["bboxes"].min()) >= 0 and float(batch["bboxes"].max()) <= 1
    assert set(batch["batch_idx"].tolist()) <= {0.0, 1.0, 2.0, 3.0}
    assert torch.equal(batch["batch_idx"], batch["batch_idx"].sort().values)  # boxes grouped by image
    assert len(batch["im_file"]) == len(batch["ori_shape"]) == len(batch["resized_shape"]) == 4
    assert batch["ori_shape"][0] == (64, 64) and batch["resized_shape"][0] == (64, 64)
    assert len(loader) == 2


def test_without_randomness_a_sample_is_the_image_and_its_labels(synth_yaml):
    dataset = TrainDataset(synth_yaml, "train", 64, True, STILL, progress=False)
    sample = dataset[2]
    image = cv2.imread(sample["im_file"])
    np.testing.assert_array_equal(sample["img"].numpy(), image.transpose(2, 0, 1)[::-1])
    rows = np.loadtxt(label_path_for(sample["im_file"]), ndmin=2)
    np.testing.assert_allclose(sample["cls"][:, 0].numpy(), rows[:, 0])
    np.testing.assert_allclose(sample["bboxes"].numpy(), rows[:, 1:], atol=1e-5)


def test_same_seed_and_epoch_give_identical_batches_other_epochs_and_seeds_differ(synth_yaml):
    first, second = loader_for(synth_yaml), loader_for(synth_yaml)
    epoch0 = epoch_batches(first, 0)
    assert_same_batches(epoch0, epoch_batches(second, 0))
    assert_same_batches(epoch_batches(first, 3), epoch_batches(second, 3))
    epoch1 = epoch_batches(first, 1)
    assert not all(torch.equal(a["img"], b["img"]) for a, b in zip(epoch0, epoch1, strict=True))
    other_seed = epoch_batches(loader_for(synth_yaml, seed=1), 0)
    assert [b["im_file"] for b in other_seed] != [b["im_file"] for b in epoch0]


def test_global_random_state_is_neither_used_nor_touched(synth_yaml):
    loader = loader_for(synth_yaml)
    torch.manual_seed(0)
    np.random.seed(0)
    reference = epoch_batches(loader, 0)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    torch.manual_seed(123)
    np.random.seed(123)
    assert_same_batches(reference, epoch_batches(loader, 0))
    torch.manual_seed(0)
    np.random.seed(0)
    epoch_batches(loader, 0)
    assert torch.equal(torch.get_rng_state(), torch_state)
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)


def test_workers_give_bit_identical_batches(synth_yaml):
    serial, parallel = loader_for(synth_yaml, workers=0), loader_for(synth_yaml, workers=2)
    for epoch in (0, 1):
        assert_same_batches(epoch_batches(serial, epoch), epoch_batches(parallel, epoch))
    serial.dataset.set_mosaic(False)  # close_mosaic reaches the workers of the next pass
    parallel.dataset.set_mosaic(False)
    assert_same_batches(epoch_batches(serial, 2), epoch_batches(parallel, 2))


class _RandomDraws(torch.utils.data.Dataset):
    """Returns draws of the global RNGs of the process that loads it."""

    epoch = 0

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        info = torch.utils.data.get_worker_info()
        return torch.tensor([float(np.random.randint(1 << 30)), float(torch.randint(1 << 30, ())),
                             float(info.id if info else -1)])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


def test_worker_seeds_depend_on_seed_epoch_and_worker():
    def draws(seed: int, epoch: int) -> torch.Tensor:
        loader = build_dataloader(_RandomDraws(), batch=1, workers=2, shuffle=False, seed=seed)
        loader.set_epoch(epoch)
        return torch.cat(list(loader))

    first = draws(0, 0)
    assert sorted(first[:, 2].tolist()) == [0, 0, 1, 1]
    assert torch.equal(first, draws(0, 0))
    assert not torch.equal(first[:, :2], draws(0, 1)[:, :2]) and not torch.equal(first[:, :2], draws(1, 0)[:, :2])
    assert first[0, 0] != first[1, 0]  # the two workers differ


def test_worker_seeder_seeds_every_generator():
    state = np.random.get_state()
    try:
        WorkerSeeder(5)(1)
        draws = (np.random.randint(1 << 30), int(torch.randint(1 << 30, ())))
        WorkerSeeder(5)(1)
        assert draws == (np.random.randint(1 << 30), int(torch.randint(1 << 30, ())))
        WorkerSeeder(5)(0)
        assert draws[0] != np.random.randint(1 << 30)
    finally:
        np.random.set_state(state)


def test_sampler_permutation_padding_and_rank_split():
    plain = ResumableSampler(10, shuffle=False, world_size=4, rank=1)
    assert list(plain) == [1, 5, 9] and len(plain) == 3  # padded 0..9, 0, 1
    assert list(ResumableSampler(10, shuffle=False, world_size=4, rank=3)) == [3, 7, 1]
    assert list(ResumableSampler(10, shuffle=False, world_size=4, rank=3, drop_last=True)) == [3, 7]
    shares = [ResumableSampler(10, seed=3, world_size=3, rank=r) for r in range(3)]
    for share in shares:
        share.set_epoch(2)
    union = sum((list(s) for s in shares), [])
    assert len(union) == 12 and set(union) == set(range(10))
    a, b = ResumableSampler(10, seed=3), ResumableSampler(10, seed=3)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b) and sorted(a) == list(range(10))
    b.set_epoch(5)
    assert list(a) != list(b)
    assert list(ResumableSampler(10, seed=0)) != list(ResumableSampler(10, seed=1))
    for bad in ({"world_size": 2, "rank": 2}, {"world_size": 0}):
        with pytest.raises(ConfigError):
            ResumableSampler(10, **bad)


def test_state_round_trip_resumes_at_the_right_batch(synth_yaml):
    uninterrupted = epoch_batches(loader_for(synth_yaml, batch=2), 1)
    killed = loader_for(synth_yaml, batch=2)
    killed.set_epoch(1)
    stream = iter(killed)
    consumed = [next(stream), next(stream)]
    state = killed.state_dict()
    assert state["epoch"] == 1 and state["start_index"] == 4
    resumed = loader_for(synth_yaml, batch=2)
    resumed.load_state_dict(state)
    assert len(resumed) == 2
    rest = list(resumed)
    assert_same_batches(consumed + rest, uninterrupted)
    assert resumed.state_dict()["start_index"] == 8
    resumed.set_epoch(2)  # a new epoch starts from its first batch
    assert len(list(resumed)) == 4
    with pytest.raises(ConfigError):
        loader_for(synth_yaml, batch=2, seed=9).load_state_dict(state)


def test_corrupt_image_is_skipped_with_a_warning_naming_it(synth_yaml, tmp_path, caplog):
    yaml_path = copy_dataset(synth_yaml, tmp_path)
    garbage = tmp_path / "ds" / "images" / "train" / "zz_garbage.jpg"
    garbage.write_bytes(b"definitely not a jpeg" * 10)
    with caplog.at_level(logging.WARNING):
        dataset = TrainDataset(yaml_path, "train", 64, True, None, cache=False, progress=False)
    assert len(dataset) == 8 and str(garbage) not in dataset.im_files
    assert any(str(garbage) in record.getMessage() for record in caplog.records)


def truncated_png(path: Path) -> None:
    """A PNG whose header (size) reads but whose pixels cannot be decoded."""
    ok, encoded = cv2.imencode(".png", np.full((64, 64, 3), 50, np.uint8))
    data = encoded.tobytes()
    idat = data.index(b"IDAT") - 4
    bad_chunk = b"\x00\x00\x00\x04IDAT" + b"\xff\xff\xff\xff"
    bad_chunk += zlib.crc32(b"IDAT\xff\xff\xff\xff").to_bytes(4, "big")
    path.write_bytes(data[:idat] + bad_chunk + data[-12:])  # + IEND


def test_image_failing_to_decode_during_training_is_replaced(synth_yaml, tmp_path, caplog):
    yaml_path = copy_dataset(synth_yaml, tmp_path)
    bad = tmp_path / "ds" / "images" / "train" / "00003.png"
    truncated_png(bad)
    (tmp_path / "ds" / "labels" / "train" / "00003.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    dataset = TrainDataset(yaml_path, "train", 64, True, STILL, cache=False, progress=False)
    index = dataset.im_files.index(str(bad))
    with caplog.at_level(logging.WARNING):
        sample = dataset[index]
    assert sample["im_file"] == dataset.im_files[index + 1]  # the next image, deterministically
    assert torch.equal(sample["img"], dataset[index + 1]["img"])
    assert any(str(bad) in record.getMessage() for record in caplog.records)
    loader = build_dataloader(dataset, batch=3, workers=0, shuffle=True, seed=0)
    assert sum(len(b["im_file"]) for b in loader) == len(dataset)  # the epoch goes on


def test_no_usable_image_fails_before_the_first_epoch(tmp_path):
    images = tmp_path / "ds" / "images" / "train"
    images.mkdir(parents=True)
    for i in range(3):
        (images / f"{i}.jpg").write_bytes(b"garbage")
    (tmp_path / "ds" / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [a]\n")
    with pytest.raises(DatasetError) as error:
        TrainDataset(tmp_path / "ds" / "data.yaml", "train", 64, True, None, progress=False)
    assert "\n" not in str(error.value) and "unreadable" in str(error.value)
    for i in range(3):  # headers that read but pixels that do not decode: caught at construction too
        (images / f"{i}.jpg").unlink()
        truncated_png(images / f"{i}.png")
    with pytest.raises(DatasetError, match="can be decoded"):
        TrainDataset(tmp_path / "ds" / "data.yaml", "train", 64, True, None, cache=False, progress=False)


def test_validation_samples_are_letterboxed_without_augmentation(synth_yaml):
    dataset = TrainDataset(synth_yaml, "val", 96, False, progress=False)
    sample = dataset[0]
    assert sample["img"].shape == (3, 96, 96) and sample["ratio_pad"] == ((1.5, 1.5), (0, 0))
    assert sample["resized_shape"] == (96, 96) and sample["ori_shape"] == (64, 64)
    rows = np.loadtxt(label_path_for(sample["im_file"]), ndmin=2)
    np.testing.assert_allclose(sample["bboxes"].numpy(), rows[:, 1:], atol=1e-5)
    rect = TrainDataset(synth_yaml, "val", 64, False, rect=True, batch_size=2, progress=False)
    np.testing.assert_array_equal(rect.batch_shapes, [[96, 96], [96, 96]])  # ceil(64 / 32 + 0.5) * 32
    assert rect[0]["ratio_pad"] == ((1.0, 1.0), (16, 16))
    batches = list(build_val_dataloader(rect, batch=2))
    assert [b["img"].shape[0] for b in batches] == [2, 1] and "ratio_pad" in batches[0]
    with pytest.raises(ConfigError):
        build_dataloader(rect, batch=3, workers=0, shuffle=False, seed=0)
    with pytest.raises(ConfigError):
        build_val_dataloader(TrainDataset(synth_yaml, "val", 64, True, progress=False), batch=2)


def test_rect_batch_shapes_hand_computed():
    shapes = np.array([[32, 64], [48, 64], [64, 64], [96, 64], [128, 64]], np.float64)  # (h, w) sorted by h / w
    # batch [0.5, 0.75] -> (0.75, 1); batch [1.0, 1.5] -> mixed (1, 1); batch [2.0] -> (1, 0.5)
    np.testing.assert_array_equal(rect_batch_shapes(shapes, 64, 32, 2, 0.0), [[64, 64], [64, 64], [64, 32]])
    np.testing.assert_array_equal(rect_batch_shapes(shapes[:2], 128, 32, 2, 0.0), [[96, 128]])


def test_bad_arguments_are_rejected(synth_yaml):
    for kwargs in ({"imgsz": 60}, {"imgsz": 0}, {"stride": 0}):
        with pytest.raises(ConfigError):
            TrainDataset(synth_yaml, "train", kwargs.pop("imgsz", 64), True, progress=False, **kwargs)
    dataset = TrainDataset(synth_yaml, "train", 64, True, progress=False)
    for kwargs in ({"batch": 0}, {"workers": -1}):
        with pytest.raises(ConfigError):
            build_dataloader(dataset, **{"batch": 2, "workers": 0, **kwargs}, shuffle=True, seed=0)
    with pytest.raises(DatasetError):
        TrainDataset(synth_yaml, "test", 64, True, progress=False)


def test_cached_images_give_the_same_batches(synth_yaml, tmp_path, caplog):
    assert_same_batches(epoch_batches(loader_for(synth_yaml), 1),
                        epoch_batches(loader_for(synth_yaml, cache_images=True), 1))
    cached = TrainDataset(synth_yaml, "val", 64, False, cache_images=True, progress=False)
    plain = TrainDataset(synth_yaml, "val", 64, False, progress=False)
    assert torch.equal(cached[1]["img"], plain[1]["img"]) and cached[1]["ratio_pad"] == plain[1]["ratio_pad"]
    yaml_path = copy_dataset(synth_yaml, tmp_path)
    bad = tmp_path / "ds" / "images" / "train" / "00005.png"
    truncated_png(bad)
    with caplog.at_level(logging.WARNING):
        dataset = TrainDataset(yaml_path, "train", 64, True, STILL, cache=False, cache_images=True, progress=False)
    assert any(str(bad) in record.getMessage() for record in caplog.records)
    index = dataset.im_files.index(str(bad))
    assert dataset[index]["im_file"] == dataset.im_files[index + 1]


@pytest.mark.slow
def test_dataloader_benchmark_writes_a_table_and_json(tmp_path):
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "dataloader.json"
    command = [sys.executable, str(root / "benchmarks" / "dataloader.py"), "--images", "8", "--imgsz", "64",
               "--batch", "4", "--workers", "0", "--epochs", "1", "--warmup", "0", "--cache-images", "off", "on",
               "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [r["cache_images"] for r in rows] == [False, True] and all(r["images"] == 8 for r in rows)
    assert all(r["best_img_per_s"] > 0 and r["cpu_ms_per_img"] > 0 for r in rows)
    assert any(line.split()[:3] == ["imgsz", "batch", "workers"] for line in done.stdout.splitlines())
