"""Image-classification datasets: ImageNet-style class folders, given as a folder or a YAML.

Layout (the reference's)::

    root/train/<class>/*.jpg      required
    root/val/<class>/*.jpg        optional (validation split; else test/ is used to validate)
    root/test/<class>/*.jpg       optional

Class names are the sorted folder names of ``train/`` (class 0 = the first); ``val``/``test`` folders are mapped by
name and may hold a subset of the classes, never another name. A YAML gives ``path`` (default: the YAML's folder),
``train``, optional ``val``/``test`` (folders relative to ``path``) and optional ``names`` (index -> name; then
the class folders must carry exactly those names). Images are found recursively inside each class folder (suffixes
of :data:`yolokit.data.labels.IMG_SUFFIXES`). Unreadable images (header that Pillow cannot identify, or a side
below 10 px) are skipped with one warning naming them.

:class:`ClassifyDataset` samples: ``{"img": (3, imgsz, imgsz) uint8 RGB tensor, "cls": int, "im_file": str}``;
with ``augment`` every random draw of sample ``i`` in epoch ``e`` comes from ``np.random.default_rng([seed, e, i])``
(bit-identical for any number of loader workers; a resumed run replays it). :func:`collate_classify` stacks them
into ``{"img": (B, 3, H, W) uint8, "cls": (B,) int64, "im_file": [...]}``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolokit.data.sample_state import EpochState
from yolokit.errors import ConfigError, DatasetError, SourceError

__all__ = ["ClassifyData", "ClassifyDataset", "collate_classify", "load_classify_data", "scan_split", "SPLITS"]

logger = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
MIN_SIDE = 10  # images smaller than this (either side) are skipped, as the reference does


@dataclass(frozen=True)
class ClassifyData:
    """A classification dataset: ``root``, the folder of each split present, class names, the YAML if any."""

    root: Path
    splits: dict[str, Path]
    names: dict[int, str]
    yaml_path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def nc(self) -> int:
        return len(self.names)

    @property
    def val_split(self) -> str | None:
        """The split used to validate: ``val`` if present, else ``test``, else None."""
        return next((s for s in ("val", "test") if s in self.splits), None)


def _class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    from yolokit.utils.yaml_safe import safe_load

    try:
        raw = safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise DatasetError(f"cannot read dataset YAML {path}: {str(error).splitlines()[0]}; fix the file") from None
    if not isinstance(raw, dict) or not raw.get("train"):
        raise DatasetError(f"dataset YAML {path}: expected a mapping with at least 'train' (a folder of class "
                           "folders), found none")
    return raw


def _yaml_names(raw: dict[str, Any], path: Path) -> dict[int, str] | None:
    names = raw.get("names")
    if names is None:
        return None
    if isinstance(names, list):
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict):
        try:
            return {int(k): str(v) for k, v in sorted(names.items(), key=lambda kv: int(kv[0]))}
        except (TypeError, ValueError):
            pass
    raise DatasetError(f"dataset YAML {path}: 'names' must be a list or {{index: name}}, found {names!r}")


def load_classify_data(source: str | Path) -> ClassifyData:
    """Read a classification dataset from a folder (``root/train/<class>/...``) or a YAML (module docstring).

    Raises:
        DatasetError: missing ``train`` folder, no class folders, a split folder naming an unknown class, YAML
            names that differ from the folders, or a detection-style dataset (images without class folders).
    """
    path = Path(source).expanduser()
    raw: dict[str, Any] = {}
    yaml_path = None
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        yaml_path, raw = path, _read_yaml(path)
        root = (path.parent / str(raw.get("path") or ".")).resolve()
        folders = {s: root / str(raw[s]) for s in SPLITS if raw.get(s)}
    elif path.is_dir():
        root = path.resolve()
        folders = {s: root / s for s in SPLITS if (root / s).is_dir()}
    else:
        raise DatasetError(f"classification dataset {source} not found: pass a folder holding train/<class>/ "
                           "images (and val/), or a dataset YAML")
    if "train" not in folders or not folders["train"].is_dir():
        raise DatasetError(f"classification dataset {source}: no train folder ({folders.get('train', root / 'train')}"
                           "); expected train/<class>/*.jpg")
    classes = _class_folders(folders["train"])
    if not classes:
        raise DatasetError(f"classification dataset {source}: {folders['train']} has no class folders; expected "
                           "train/<class>/*.jpg (a detection dataset with labels/ needs task=detect)")
    names = _yaml_names(raw, yaml_path) if yaml_path else None
    if names is not None and sorted(names.values()) != classes:
        raise DatasetError(f"dataset YAML {yaml_path}: 'names' {sorted(names.values())} differ from the class "
                           f"folders of {folders['train']} {classes}; make them the same")
    names = names or dict(enumerate(classes))
    for split, folder in folders.items():
        if not folder.is_dir():
            raise DatasetError(f"classification dataset {source}: split '{split}' folder {folder} does not exist")
        unknown = sorted(set(_class_folders(folder)) - set(names.values()))
        if unknown:
            raise DatasetError(f"classification dataset {source}: {folder} has class folders {unknown[:5]} that "
                               f"train/ does not have; every split must use train's classes")
    return ClassifyData(root=root, splits=folders, names=names, yaml_path=yaml_path, raw=raw)


def _check_image(path: Path) -> str | None:
    """None when Pillow identifies the file and both sides are >= MIN_SIDE, else the reason (header read only)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            w, h = image.size
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError, SyntaxError, EOFError) as error:
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    from yolokit.data.image import MAX_IMAGE_PIXELS

    if w * h > MAX_IMAGE_PIXELS:
        return f"image declares {w}x{h} pixels, more than the {MAX_IMAGE_PIXELS} yolokit decodes"
    return None if min(w, h) >= MIN_SIDE else f"image size {w}x{h} is below {MIN_SIDE} px"


def scan_split(data: ClassifyData, split: str) -> list[tuple[str, int]]:
    """``[(image path, class index), ...]`` of one split, sorted by class then path; bad images skipped (warned).

    Raises:
        DatasetError: the split is absent or holds no readable image.
    """
    from concurrent.futures import ThreadPoolExecutor

    from yolokit.data.labels import IMG_SUFFIXES

    if split not in data.splits:
        raise DatasetError(f"classification dataset {data.root} has no '{split}' split (has: {', '.join(data.splits)})")
    index = {name: i for i, name in data.names.items()}
    candidates: list[tuple[Path, int]] = []
    for name in _class_folders(data.splits[split]):
        files = sorted(p for p in (data.splits[split] / name).rglob("*")
                       if p.suffix.lower() in IMG_SUFFIXES and p.is_file())
        candidates.extend((p, index[name]) for p in files)
    with ThreadPoolExecutor(max_workers=4) as pool:
        reasons = list(pool.map(_check_image, [p for p, _ in candidates]))
    bad = [(p, r) for (p, _), r in zip(candidates, reasons, strict=True) if r is not None]
    if bad:
        shown = "; ".join(f"{p} ({r})" for p, r in bad[:10])
        logger.warning("Skipped %d unreadable image(s) in split '%s': %s%s", len(bad), split, shown,
                       f" and {len(bad) - 10} more" if len(bad) > 10 else "")
    samples = [(str(p), c) for (p, c), r in zip(candidates, reasons, strict=True) if r is None]
    if not samples:
        raise DatasetError(f"split '{split}' of {data.root} holds no readable image ({len(bad)} skipped); expected "
                           f"{data.splits[split]}/<class>/*.jpg")
    return samples


def collate_classify(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Samples -> ``{"img": (B, 3, H, W) uint8, "cls": (B,) int64, "im_file": [str]}``."""
    return {"img": torch.from_numpy(np.stack([s["img"].numpy() for s in samples])),
            "cls": torch.tensor([s["cls"] for s in samples], dtype=torch.int64),
            "im_file": [s["im_file"] for s in samples]}


class ClassifyDataset(EpochState, torch.utils.data.Dataset):
    """One split of a classification dataset, augmented for training or centre-cropped for evaluation.

    Args:
        data: a :class:`ClassifyData` or what :func:`load_classify_data` accepts.
        split: ``"train"``, ``"val"`` or ``"test"``.
        imgsz: output side (224 for ImageNet models).
        augment: the training transform (:class:`~yolokit.data.classify_transforms.ClassifyTrainTransform`);
            False: :func:`~yolokit.data.classify_transforms.eval_crop`.
        hyp: augmentation settings (mapping or object with ``scale fliplr flipud hsv_h hsv_s hsv_v erasing``).
        seed: the augmentation seed (the loader sets it: ``build_dataloader(..., seed=)``).
        fraction: keep the first ``fraction`` of the samples of each class (at least one).
        crop_options: extra keyword arguments of ``eval_crop`` (a checkpoint's recorded resize / interpolation).

    An image that fails to decode later is replaced by the next one that decodes, with a warning naming it.
    """

    collate_fn = staticmethod(collate_classify)

    def __init__(self, data: ClassifyData | str | Path, split: str, imgsz: int = 224, augment: bool = False,
                 hyp: Mapping[str, Any] | Any | None = None, *, seed: int = 0, fraction: float = 1.0,
                 crop_options: Mapping[str, Any] | None = None) -> None:
        from yolokit.data.classify_transforms import ClassifyTrainTransform

        self.data = data if isinstance(data, ClassifyData) else load_classify_data(data)
        self.split, self.names, self.nc = split, dict(self.data.names), self.data.nc
        self.samples = _take_fraction(scan_split(self.data, split), fraction)
        self.imgsz, self.augment = int(imgsz), bool(augment)
        self.transform = ClassifyTrainTransform(self.imgsz, hyp) if self.augment else None
        self.seed, self.epoch = int(seed), 0
        self.crop_options = dict(crop_options or {})
        self._unreadable: set[int] = set()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_seed(self, seed: int) -> None:
        self.seed = int(seed)

    @property
    def im_files(self) -> list[str]:
        return [path for path, _ in self.samples]

    @property
    def labels(self) -> list[int]:
        """Class index of every sample, in order."""
        return [c for _, c in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def _decode(self, index: int) -> tuple[np.ndarray, int]:
        from yolokit.data.image import read_image

        for step in range(len(self.samples)):
            used = (index + step) % len(self.samples)
            if used in self._unreadable:
                continue
            try:
                return read_image(self.samples[used][0]), used
            except SourceError as error:
                self._unreadable.add(used)
                logger.warning("%s; using another image in its place", error)
        raise DatasetError(f"none of the {len(self.samples)} images of split {self.split!r} of {self.data.root} can "
                           "be decoded; fix or replace the images")

    def __getitem__(self, index: int | tuple[int, dict[str, Any]]) -> dict[str, Any]:
        from yolokit.data.classify_transforms import eval_crop

        index = self.resolve_key(index)
        image, used = self._decode(index)
        if self.transform is not None:
            rgb = self.transform(image, np.random.default_rng([self.seed, self.epoch, int(index)]))
        else:
            rgb = eval_crop(image, self.imgsz, **self.crop_options)
        tensor = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
        return {"img": tensor, "cls": self.samples[used][1], "im_file": self.samples[used][0]}

    def __repr__(self) -> str:
        return (f"ClassifyDataset({self.data.root}, split={self.split!r}, images={len(self)}, classes={self.nc}, "
                f"imgsz={self.imgsz}, augment={self.augment})")


def _take_fraction(samples: list[tuple[str, int]], fraction: float) -> list[tuple[str, int]]:
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction!r}")
    if fraction == 1:
        return samples
    by_class: dict[int, list[tuple[str, int]]] = {}
    for item in samples:
        by_class.setdefault(item[1], []).append(item)
    return [item for items in by_class.values() for item in items[:max(1, round(len(items) * fraction))]]
