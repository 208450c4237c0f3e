"""Detection datasets: the dataset YAML (or a COCO json), its image lists, and a dataset of (image, labels).

Dataset YAML (the reference's layout)::

    path: ../datasets/shapes   # root; relative to the YAML's folder when relative (default: the YAML's folder)
    train: images/train        # a folder (searched recursively), a .txt list of image paths, or a list of these
    val: images/val            # paths relative to `path`; .txt lines (./images/x.jpg) relative to `path` too
    test: images/test          # optional
    names: {0: rectangle, 1: ellipse}   # or a list; optional `nc` must agree

At least one of ``train`` / ``val`` / ``test`` must be given. COCO annotations: a ``<split>_json`` key
(``val_json: annotations/instances_val2017.json``) makes ``<split>`` the folder the json's ``file_name`` entries are
relative to; a split whose value is a ``.json`` file, or a bare COCO ``.json`` given instead of a YAML (its images
found as described in :mod:`yolokit.data.coco`; it defines the ``val`` split), works the same. Class names then
come from the json categories (sorted by id, remapped to ``0..nc-1``) unless the YAML lists ``names``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yolokit.data.coco import (
    coco_categories,
    coco_image_paths,
    find_coco_image_root,
    load_coco_annotations,
    read_coco_json,
)
from yolokit.data.labels import (
    IMG_SUFFIXES,
    ImageLabels,
    ScanReport,
    label_path_for,
    log_report,
    parse_label_file,
    scan_labels,
)
from yolokit.errors import DatasetError

__all__ = ["DataConfig", "DetectionDataset", "ImageLabels", "ScanReport", "default_cache_path",
           "label_path_for", "load_coco_annotations", "load_data_config", "parse_label_file", "scan_labels"]

logger = logging.getLogger(__name__)

SPLIT_KEYS = ("train", "val", "test")
CACHE_SUFFIX = ".yolokit.cache"  # label caches: labels/train.yolokit.cache (the reference's is labels/train.cache)


@dataclass(frozen=True)
class DataConfig:
    """A resolved dataset description.

    Attributes:
        yaml_path: the data YAML (None when a bare COCO json was given).
        root: dataset root folder (absolute).
        splits: split name -> absolute, sorted image paths of that split.
        names: class index -> name; ``nc == len(names)``.
        coco_json: split -> COCO annotation file, for splits labelled by a COCO json.
        coco_category_ids: ``coco_category_ids[i]`` is the COCO category id of class ``i`` (empty without COCO).
        split_sources: split -> the folders / .txt lists it was read from (for COCO splits: the image folder).
    """

    yaml_path: Path | None
    root: Path
    splits: dict[str, list[Path]]
    names: dict[int, str]
    nc: int
    coco_json: dict[str, Path] = field(default_factory=dict)
    coco_category_ids: list[int] = field(default_factory=list)
    split_sources: dict[str, list[Path]] = field(default_factory=dict)


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    from yolokit.utils.yaml_safe import safe_load

    try:
        raw = safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise DatasetError(f"{where}: YAML syntax error ({problem}); fix the dataset YAML") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read dataset YAML {path} ({error})") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: expected a mapping with keys path/train/val/names, found {type(raw).__name__}")
    return raw


def _parse_names(raw: dict[str, Any], path: Path) -> dict[int, str] | None:
    """``names`` as a list or ``{0: name}`` -> ``{0: name, ...}`` (keys must be 0..n-1); None when absent."""
    names = raw.get("names")
    if names is None:
        return None
    if isinstance(names, (list, tuple)):
        parsed = {i: str(name) for i, name in enumerate(names)}
    elif isinstance(names, dict):
        try:
            parsed = {int(key): str(value) for key, value in names.items()}
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: 'names' keys must be integers 0..N-1, found {list(names)}") from None
        if sorted(parsed) != list(range(len(parsed))):
            raise DatasetError(f"{path}: 'names' keys must be 0..{len(parsed) - 1}, found {sorted(parsed)}")
        parsed = dict(sorted(parsed.items()))
    else:
        raise DatasetError(f"{path}: 'names' must be a list or a {{0: name}} mapping, found {type(names).__name__}")
    if not parsed:
        raise DatasetError(f"{path}: 'names' is empty; list at least one class name")
    return parsed


def _resolve(base: Path, value: Any) -> Path:
    path = Path(str(value)).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _not_found(path: Path, key: str, value: Any, raw: dict[str, Any], yaml_path: Path) -> DatasetError:
    hint = "; this YAML has a 'download' key but yolokit never downloads datasets: fetch it yourself" \
        if raw.get("download") else "; check 'path' and this key"
    return DatasetError(f"{yaml_path}: '{key}' path not found: {path} (from {value!r}){hint}")


def _read_image_list(list_path: Path, root: Path) -> list[Path]:
    """Image paths listed in a .txt file, one a line, relative to ``root`` (``./images/x.jpg``) or absolute."""
    lines = [line.strip() for line in list_path.read_text(encoding="utf-8").splitlines()]
    entries = [line for line in lines if line and not line.startswith("#")]
    images = [_resolve(root, line) for line in entries if Path(line).suffix.lower() in IMG_SUFFIXES]
    if len(images) != len(entries):
        logger.warning(f"{list_path}: ignored {len(entries) - len(images)} lines that are not image paths")
    return images


def _collect_images(key: str, value: Any, root: Path, raw: dict[str, Any], yaml_path: Path) -> tuple[list, list]:
    """A split's value (folder / .txt / image / list of these) -> (sorted image paths, source paths)."""
    images: set[Path] = set()
    sources = []
    for entry in value if isinstance(value, (list, tuple)) else [value]:
        path = _resolve(root, entry)
        sources.append(path)
        if path.is_dir():
            images.update(p for p in path.rglob("*") if p.suffix.lower() in IMG_SUFFIXES and p.is_file())
        elif path.is_file() and path.suffix.lower() == ".txt":
            images.update(_read_image_list(path, root))
        elif path.is_file() and path.suffix.lower() in IMG_SUFFIXES:
            images.add(path)
        elif path.exists():
            raise DatasetError(f"{yaml_path}: '{key}' must be a folder, a .txt list or an image, found {path}")
        else:
            raise _not_found(path, key, entry, raw, yaml_path)
    return sorted(images), sources


def _coco_split(key: str, raw: dict[str, Any], root: Path, yaml_path: Path) -> tuple[Path, Path, dict[str, Any]]:
    """(json path, image root, parsed json) of a COCO-labelled split."""
    json_value = raw.get(f"{key}_json") or raw[key]
    json_key = f"{key}_json" if raw.get(f"{key}_json") else key
    json_path = _resolve(root, json_value)
    if not json_path.is_file():
        raise _not_found(json_path, json_key, json_value, raw, yaml_path)
    data = read_coco_json(json_path)
    if raw.get(f"{key}_json") and raw.get(key) is not None:
        image_root = _resolve(root, raw[key])
        if not image_root.is_dir():
            raise _not_found(image_root, key, raw[key], raw, yaml_path)
    else:
        image_root = find_coco_image_root(json_path, data)
    return json_path, image_root, data


def _is_coco_split(key: str, raw: dict[str, Any]) -> bool:
    value = raw.get(key)
    return bool(raw.get(f"{key}_json")) or (isinstance(value, str) and value.lower().endswith(".json"))


def _check_names(names: dict[int, str] | None, coco: tuple[dict[int, str], list[int]] | None, raw: dict[str, Any],
                 path: Path) -> dict[int, str]:
    """Final class names: the YAML's, else the COCO categories'; ``nc`` and the category count must agree."""
    if names is None and coco is None:
        raise DatasetError(f"{path}: missing 'names'; add the class names as a list or a {{0: name}} mapping")
    if names is not None and coco is not None and len(names) != len(coco[0]):
        raise DatasetError(f"{path}: 'names' lists {len(names)} classes but the COCO json has {len(coco[0])} "
                           f"categories; make them agree or drop 'names'")
    final = names if names is not None else coco[0]
    if raw.get("nc") is not None and raw["nc"] != len(final):
        raise DatasetError(f"{path}: nc={raw['nc']} but 'names' lists {len(final)} classes; make them agree "
                           f"(or drop 'nc')")
    return final


def load_data_config(path: str | Path) -> DataConfig:
    """Read a dataset YAML (or a bare COCO instances json) -> :class:`DataConfig`. Raises ``DatasetError``."""
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise DatasetError(f"dataset file not found: {path}; expected a data YAML (or a COCO json)")
    if path.suffix.lower() == ".json":
        raw: dict[str, Any] = {"val": path.name}
        root = path.parent
    else:
        raw = _read_yaml(path)
        root = _resolve(path.parent, raw.get("path") or ".")
        if not root.is_dir():
            raise _not_found(root, "path", raw.get("path"), raw, path)
    names = _parse_names(raw, path)
    splits, sources, coco_json = {}, {}, {}
    coco: tuple[dict[int, str], list[int]] | None = None
    for key in SPLIT_KEYS:
        if _is_coco_split(key, raw):
            json_path, image_root, data = _coco_split(key, raw, root, path)
            categories = coco_categories(data, json_path)
            if coco is not None and categories != coco:
                raise DatasetError(f"{json_path}: categories differ from the other split's COCO json; all splits "
                                   f"must share one category list")
            coco, coco_json[key] = categories, json_path
            splits[key], sources[key] = coco_image_paths(data, image_root), [image_root]
        elif raw.get(key) is not None:
            splits[key], sources[key] = _collect_images(key, raw[key], root, raw, path)
    if not splits:
        raise DatasetError(f"{path}: no split given; add 'train' and/or 'val' (an image folder or a .txt list)")
    final_names = _check_names(names, coco, raw, path)
    return DataConfig(yaml_path=None if path.suffix.lower() == ".json" else path, root=root, splits=splits,
                      names=final_names, nc=len(final_names), coco_json=coco_json,
                      coco_category_ids=list(coco[1]) if coco else [], split_sources=sources)


def default_cache_path(data: DataConfig, split: str) -> Path | None:
    """Where the label cache of a YOLO-format split lives.

    Beside a .txt list (``train.txt`` -> ``train.yolokit.cache``), else next to the labels folder of the first image
    (``images/train/a.jpg`` -> ``labels/train.yolokit.cache``). None for an empty split. The name is yolokit's own:
    the reference implementation keeps its (pickle-based) cache at ``labels/train.cache``, which yolokit never
    reads nor writes, so neither tool overwrites the other's cache or rescans because of it.
    """
    sources = data.split_sources.get(split) or []
    if sources and sources[0].suffix.lower() == ".txt":
        return sources[0].with_name(f"{sources[0].stem}{CACHE_SUFFIX}")
    images = data.splits.get(split) or []
    if not images:
        return None
    folder = label_path_for(images[0]).parent
    return folder.with_name(f"{folder.name}{CACHE_SUFFIX}")


def _coco_labels(data: DataConfig, split: str) -> tuple[list[ImageLabels], ScanReport]:
    """Labels of a COCO-json split; images missing on disk are reported and skipped."""
    labels, _, _ = load_coco_annotations(data.coco_json[split], data.split_sources[split][0])
    report = ScanReport(images=len(labels))
    kept = []
    for item in labels:
        if not os.path.isfile(item.im_file):
            report.corrupt += 1
            report.messages.append(f"{item.im_file}: image listed in {data.coco_json[split]} not found, skipped")
            continue
        kept.append(item)
        report.found += bool(len(item))
        report.empty += not len(item)
        report.instances += len(item)
    log_report(report, f"{data.coco_json[split].name}")
    return kept, report


class DetectionDataset:
    """Images and ground truth of one split.

    ``dataset[i] -> (image_bgr (H, W, 3) uint8, ImageLabels)`` with boxes normalised ``cx, cy, w, h``. Labels come
    from YOLO label files (scanned and cached, see :func:`scan_labels`) or from the split's COCO json.
    """

    def __init__(self, data: DataConfig, split: str, *, cache: bool = True, progress: bool = True) -> None:
        if split not in data.splits:
            raise DatasetError(f"split {split!r} is not in {data.yaml_path or data.root}; it has "
                               f"{sorted(data.splits)}")
        self.data, self.split = data, split
        self.names: dict[int, str] = dict(data.names)
        self.nc = data.nc
        where = ", ".join(str(s) for s in data.split_sources.get(split, [])) or str(data.root)
        paths = data.splits[split]
        if not paths:
            raise DatasetError(f"no images found in {where} (split {split!r}); expected files with suffixes "
                               f"{', '.join(sorted(IMG_SUFFIXES))}")
        if split in data.coco_json:
            self.labels, self.report = _coco_labels(data, split)
        else:
            cache_path = default_cache_path(data, split) if cache else None
            self.labels, self.report = scan_labels(paths, data.nc, cache_path=cache_path, progress=progress,
                                                   desc=f"{split} labels")
        if not self.labels:
            first = self.report.messages[0] if self.report.messages else "no details"
            raise DatasetError(f"all {len(paths)} images of split {split!r} in {where} were unreadable "
                               f"(first problem: {first}); fix or replace the images")

    @property
    def im_files(self) -> list[str]:
        """Image paths, in dataset order."""
        return [item.im_file for item in self.labels]

    def __len__(self) -> int:
        return len(self.labels)

    def load_image(self, index: int) -> np.ndarray:
        """Decode image ``index`` -> ``(H, W, 3)`` uint8 BGR (raises ``SourceError`` when unreadable)."""
        from yolokit.data.sources import read_image

        return read_image(self.labels[index].im_file)

    def __getitem__(self, index: int) -> tuple[np.ndarray, ImageLabels]:
        return self.load_image(index), self.labels[index]

    def __repr__(self) -> str:
        return f"DetectionDataset(split={self.split!r}, images={len(self)}, nc={self.nc})"
