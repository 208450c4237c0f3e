"""Classification results: ``Probs`` (one image's class distribution) and ``ClassifyResults`` (with the image).

``Probs.data`` is the ``(nc,)`` probability vector (torch tensor or numpy array); ``top1`` / ``top5`` are class
ids (``top5``: the five most likely, most likely first, fewer when there are fewer classes), ``top1conf`` /
``top5conf`` their probabilities. ``cpu()``, ``numpy()`` and ``to()`` return new objects.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolokit.utils.io import atomic_write_bytes

__all__ = ["Probs", "ClassifyResults"]

Array = torch.Tensor | np.ndarray


class Probs:
    """Class probabilities of one image. ``data``: ``(nc,)`` floats summing to 1."""

    def __init__(self, data: Array) -> None:
        if getattr(data, "ndim", None) != 1:
            raise ValueError(f"Probs: expected a (nc,) vector, got shape {getattr(data, 'shape', type(data))}")
        self.data = data

    @property
    def top5(self) -> list[int]:
        """Ids of the (up to) five most likely classes, most likely first."""
        values = self.data if isinstance(self.data, torch.Tensor) else torch.from_numpy(np.asarray(self.data))
        return [int(i) for i in torch.topk(values.float(), min(5, values.numel())).indices.tolist()]

    @property
    def top1(self) -> int:
        """Id of the most likely class."""
        return self.top5[0]

    @property
    def top1conf(self) -> Array:
        """Probability of :attr:`top1` (0-d, same type as ``data``)."""
        return self.data[self.top1]

    @property
    def top5conf(self) -> Array:
        """Probabilities of :attr:`top5`, ``(k,)``."""
        return self.data[self.top5]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def cpu(self) -> Probs:
        return Probs(self.data.cpu() if isinstance(self.data, torch.Tensor) else self.data)

    def numpy(self) -> Probs:
        return Probs(self.data.detach().cpu().numpy() if isinstance(self.data, torch.Tensor) else self.data)

    def to(self, *args: Any, **kwargs: Any) -> Probs:
        data = self.data if isinstance(self.data, torch.Tensor) else torch.from_numpy(np.asarray(self.data))
        return Probs(data.to(*args, **kwargs))

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __repr__(self) -> str:
        return f"Probs(top1={self.top1}, top1conf={float(self.top1conf):.4f}, nc={len(self)})"


class ClassifyResults:
    """The class distribution of one image, with the image and stage timings (same surface as detection
    ``Results``: ``orig_img``, ``orig_shape``, ``path``, ``names``, ``speed``, ``save_dir``; ``boxes`` is None).

    Args:
        orig_img: ``(h, w, 3)`` BGR uint8 original image.
        path: image path or name.
        names: class id -> name.
        probs: ``(nc,)`` probabilities (or a :class:`Probs`).
        speed: milliseconds per image for ``preprocess``, ``inference``, ``postprocess``.
        save_dir: run directory where the predictor saved outputs, if any.
    """

    boxes = None

    def __init__(self, orig_img: np.ndarray, path: str | Path, names: Mapping[int, str], probs: Array | Probs,
                 speed: Mapping[str, float | None] | None = None, save_dir: str | Path | None = None) -> None:
        if not isinstance(orig_img, np.ndarray) or orig_img.ndim != 3:
            found = getattr(orig_img, "shape", type(orig_img).__name__)
            raise ValueError(f"ClassifyResults: expected orig_img as an (h, w, 3) array, got {found}")
        self.orig_img = orig_img
        self.orig_shape = (int(orig_img.shape[0]), int(orig_img.shape[1]))
        self.path = str(path)
        self.names = dict(names)
        self.probs = probs if isinstance(probs, Probs) else Probs(probs)
        self.speed = {"preprocess": None, "inference": None, "postprocess": None, **(speed or {})}
        self.save_dir = None if save_dir is None else str(save_dir)

    def _apply(self, fn: Callable[[Probs], Probs]) -> ClassifyResults:
        return ClassifyResults(self.orig_img, self.path, self.names, fn(self.probs), dict(self.speed), self.save_dir)

    def cpu(self) -> ClassifyResults:
        return self._apply(Probs.cpu)

    def numpy(self) -> ClassifyResults:
        return self._apply(Probs.numpy)

    def to(self, *args: Any, **kwargs: Any) -> ClassifyResults:
        return self._apply(lambda probs: probs.to(*args, **kwargs))

    def __len__(self) -> int:
        """One: a classification result always holds one answer (its top-1 class)."""
        return 1

    def __repr__(self) -> str:
        return f"ClassifyResults(path={self.path!r}, orig_shape={self.orig_shape}, {self.probs!r})"

    def _name(self, class_id: int) -> str:
        return str(self.names.get(class_id, class_id))

    def top5_lines(self) -> list[str]:
        """``["name 0.91", ...]`` for the top-5 classes, most likely first."""
        return [f"{self._name(j)} {float(self.probs.data[j]):.2f}" for j in self.probs.top5]

    def plot(self, conf: bool = True, labels: bool = True, line_width: int | None = None, **_: Any) -> np.ndarray:
        """A copy of the original image (BGR) with the top-5 classes written at its top-left corner."""
        import cv2

        image = self.orig_img.copy()
        if not labels:
            return image
        scale = max(min(image.shape[:2]) / 400, 0.35) if line_width is None else line_width / 3
        thickness = max(int(round(scale * 2)), 1)
        y = 0
        for line in (self.top5_lines() if conf else [self._name(j) for j in self.probs.top5]):
            (w, h), base = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
            y += h + base + 4
            cv2.rectangle(image, (0, y - h - base - 4), (w + 6, y), (0, 0, 0), -1)
            cv2.putText(image, line, (3, y - base - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                        cv2.LINE_AA)
        return image

    def save(self, filename: str | Path | None = None, **plot_kwargs: Any) -> str:
        """Write :meth:`plot` to ``filename`` (default ``results_<image name>`` in ``save_dir`` or the cwd)."""
        import cv2

        if filename is None:
            filename = Path(self.save_dir or ".") / f"results_{Path(self.path).name}"
        filename = Path(filename)
        suffix = filename.suffix.lower() if filename.suffix else ".jpg"
        ok, encoded = cv2.imencode(suffix, self.plot(**plot_kwargs))
        if not ok:
            raise ValueError(f"cannot encode an image as '{suffix}': save to a .jpg or .png file name instead")
        atomic_write_bytes(filename, encoded.tobytes())
        return str(filename)

    def show(self, **plot_kwargs: Any) -> None:
        """Open :meth:`plot` in the system's image viewer (through Pillow; needs a display)."""
        from PIL import Image

        Image.fromarray(np.ascontiguousarray(self.plot(**plot_kwargs)[..., ::-1])).show(title=Path(self.path).name)

    def save_txt(self, path: str | Path, save_conf: bool = False) -> str:
        """Append the top-5 as ``"<probability %.2f> <name>"`` lines (most likely first) to ``path``, as the reference
        writes them (``save_conf`` is accepted for the common signature; the probability is always written)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [f"{float(self.probs.data[j]):.2f} {self._name(j)}" for j in self.probs.top5]
        with open(path, "a", encoding="utf-8") as handle:
            handle.write("\n".join(rows) + "\n")
        return str(path)

    def save_crop(self, save_dir: str | Path, file_name: str | Path | None = None, **_: Any) -> list[str]:
        """Copy the whole image into ``save_dir/<top-1 name>/<stem>.jpg`` (sorts a folder by predicted class)."""
        import cv2

        stem = Path(file_name).stem if file_name else Path(self.path).stem or "image"
        folder = Path(save_dir) / self._name(self.probs.top1)
        path, index = folder / f"{stem}.jpg", 2
        while path.exists():
            path, index = folder / f"{stem}{index}.jpg", index + 1
        ok, encoded = cv2.imencode(".jpg", self.orig_img)
        if not ok:
            return []
        atomic_write_bytes(path, encoded.tobytes())
        return [str(path)]

    def summary(self, normalize: bool = False, decimals: int = 5) -> list[dict[str, Any]]:
        """``[{name, class, confidence}]`` of the top-1 class (``normalize`` is accepted for the common signature)."""
        top1 = self.probs.top1
        return [{"name": self._name(top1), "class": top1, "confidence": round(float(self.probs.top1conf), decimals)}]

    def to_json(self, normalize: bool = False, decimals: int = 5) -> str:
        """:meth:`summary` as an indented JSON string."""
        return json.dumps(self.summary(normalize=normalize, decimals=decimals), indent=2)

    def verbose(self) -> str:
        """The top-5 as ``"cat 0.91, dog 0.05, ..., "`` (the reference's log format)."""
        return "".join(f"{line}, " for line in self.top5_lines())
