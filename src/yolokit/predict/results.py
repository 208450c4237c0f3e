"""Prediction results: ``Boxes`` (an (N, 6) table of detections) and ``Results`` (one image's detections).

Box rows are ``[x1, y1, x2, y2, conf, cls]`` in pixels of the original image (a 7th column before ``conf`` holds a
track id when present). ``Boxes`` and ``Results`` wrap either torch tensors or numpy arrays; ``cpu()``, ``numpy()``
and ``to()`` return new objects and never modify the original.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolokit.ops.boxes import xyxy2xywh
from yolokit.predict.draw import draw_boxes
from yolokit.utils.io import atomic_write_bytes

__all__ = ["Boxes", "Results"]

Array = torch.Tensor | np.ndarray


def _divide_xy(boxes: Array, width: int, height: int) -> Array:
    """Divide the x columns of ``(N, 4)`` boxes by ``width`` and the y columns by ``height``."""
    if isinstance(boxes, torch.Tensor):
        return boxes / torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    return boxes / np.array([width, height, width, height], dtype=boxes.dtype)



def _plural(name: str, count: int) -> str:
    """``"bus"`` -> ``"buses"``, ``"cross"`` -> ``"crosses"``, ``"person"`` -> ``"persons"`` when ``count > 1``."""
    if count <= 1:
        return name
    return name + ("es" if name.endswith(("s", "x", "z", "ch", "sh")) else "s")

class Boxes:
    """Detections of one image: ``data (N, 6)`` rows ``[x1, y1, x2, y2, conf, cls]`` (or 7 with a track id).

    Args:
        data: ``(N, 6)`` or ``(N, 7)`` tensor or array.
        orig_shape: ``(height, width)`` of the image the boxes refer to (for the normalised views).
    """

    def __init__(self, data: Array, orig_shape: tuple[int, int]) -> None:
        if not isinstance(data, (torch.Tensor, np.ndarray)):
            raise TypeError(f"Boxes: expected a tensor or array, got {type(data).__name__}")
        if data.ndim == 1 and data.shape[0] == 0:
            data = data.reshape(0, 6)
        if data.ndim != 2 or data.shape[1] not in (6, 7):
            raise ValueError(f"Boxes: expected data of shape (N, 6) or (N, 7), got {tuple(data.shape)}")
        self.data = data
        self.orig_shape = (int(orig_shape[0]), int(orig_shape[1]))

    @property
    def xyxy(self) -> Array:
        """``(N, 4)`` corner boxes in pixels."""
        return self.data[:, :4]

    @property
    def xywh(self) -> Array:
        """``(N, 4)`` centre boxes ``(cx, cy, w, h)`` in pixels."""
        return xyxy2xywh(self.xyxy)

    @property
    def xyxyn(self) -> Array:
        """``(N, 4)`` corner boxes divided by the image width (x) and height (y)."""
        return _divide_xy(self.xyxy, self.orig_shape[1], self.orig_shape[0])

    @property
    def xywhn(self) -> Array:
        """``(N, 4)`` centre boxes divided by the image width (x) and height (y)."""
        return _divide_xy(self.xywh, self.orig_shape[1], self.orig_shape[0])

    @property
    def conf(self) -> Array:
        """``(N,)`` confidences."""
        return self.data[:, -2]

    @property
    def cls(self) -> Array:
        """``(N,)`` class ids (float)."""
        return self.data[:, -1]

    @property
    def is_track(self) -> bool:
        return self.data.shape[1] == 7

    @property
    def id(self) -> Array | None:
        """``(N,)`` track ids, or None when the boxes are not tracked."""
        return self.data[:, 4] if self.is_track else None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def _new(self, data: Array) -> Boxes:
        return Boxes(data, self.orig_shape)

    def cpu(self) -> Boxes:
        return self._new(self.data.cpu() if isinstance(self.data, torch.Tensor) else self.data)

    def numpy(self) -> Boxes:
        return self._new(self.data.detach().cpu().numpy() if isinstance(self.data, torch.Tensor) else self.data)

    def to(self, *args: Any, **kwargs: Any) -> Boxes:
        data = self.data if isinstance(self.data, torch.Tensor) else torch.from_numpy(self.data)
        return self._new(data.to(*args, **kwargs))

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, index: Any) -> Boxes:
        data = self.data[index]
        return self._new(data.reshape(1, -1) if data.ndim == 1 else data)

    def __repr__(self) -> str:
        return f"Boxes(n={len(self)}, orig_shape={self.orig_shape}, data={self.data!r})"


class Results:
    """Detections of one image, with the image itself and how long each stage took.

    Args:
        orig_img: ``(h, w, 3)`` BGR uint8 original image.
        path: image path or name (videos: the video path).
        names: class id -> name.
        boxes: ``(N, 6)`` ``[x1, y1, x2, y2, conf, cls]`` in pixels of ``orig_img`` (None: no detections).
        speed: milliseconds per image for ``preprocess``, ``inference``, ``postprocess``.
        save_dir: run directory where the predictor saved outputs, if any.

    ``masks``, ``keypoints``, ``obb`` and ``probs`` exist as in the reference implementation and are None: a
    detection result holds boxes only (``docs/reference-compat.md`` lists the reference names yolokit has).
    """

    masks = None  # segmentation masks (no segmentation task in yolokit)
    keypoints = None  # pose keypoints (no pose task)
    obb = None  # oriented boxes (no obb task)
    probs = None  # class probabilities (classification results are yolokit.predict.classify_results)

    def __init__(self, orig_img: np.ndarray, path: str | Path, names: Mapping[int, str],
                 boxes: Array | Boxes | None = None, speed: Mapping[str, float | None] | None = None,
                 save_dir: str | Path | None = None) -> None:
        if not isinstance(orig_img, np.ndarray) or orig_img.ndim != 3:
            found = getattr(orig_img, "shape", type(orig_img).__name__)
            raise ValueError(f"Results: expected orig_img as an (h, w, 3) array, got {found}")
        self.orig_img = orig_img
        self.orig_shape = (int(orig_img.shape[0]), int(orig_img.shape[1]))
        self.path = str(path)
        self.names = dict(names)
        if boxes is None:
            boxes = torch.zeros((0, 6))
        self.boxes = boxes if isinstance(boxes, Boxes) else Boxes(boxes, self.orig_shape)
        self.speed = {"preprocess": None, "inference": None, "postprocess": None, **(speed or {})}
        self.save_dir = None if save_dir is None else str(save_dir)

    def _apply(self, fn: Callable[[Boxes], Boxes]) -> Results:
        return Results(self.orig_img, self.path, self.names, fn(self.boxes), dict(self.speed), self.save_dir)

    def cpu(self) -> Results:
        return self._apply(Boxes.cpu)

    def numpy(self) -> Results:
        return self._apply(Boxes.numpy)

    def to(self, *args: Any, **kwargs: Any) -> Results:
        return self._apply(lambda boxes: boxes.to(*args, **kwargs))

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: Any) -> Results:
        return self._apply(lambda boxes: boxes[index])

    def __repr__(self) -> str:
        return f"Results(path={self.path!r}, orig_shape={self.orig_shape}, boxes={len(self)}, speed={self.speed})"

    def _name(self, class_id: int) -> str:
        return str(self.names.get(class_id, class_id))

    def plot(
        self, conf: bool = True, labels: bool = True, boxes: bool = True, line_width: int | None = None
    ) -> np.ndarray:
        """An annotated copy of the original image (BGR ndarray); the original is not modified."""
        image = self.orig_img.copy()
        if boxes and len(self):
            data = self.boxes.data
            draw_boxes(image, self.boxes.xyxy, data[:, -1], data[:, -2] if conf else None, self.names,
                       line_width=line_width, labels=labels)
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

    def save_crop(self, save_dir: str | Path, file_name: str | Path | None = None, gain: float = 1.02,
                  pad: int = 10) -> list[str]:
        """Save every box as a crop of the original image to ``save_dir/<class name>/<file stem>.jpg``.

        Each box is enlarged by ``gain`` (relative) and ``pad`` (pixels) around its centre, clipped to the image;
        a name already taken becomes ``<stem>2.jpg``, ``<stem>3.jpg``... Returns the written paths, in box order.
        """
        import cv2

        stem = Path(file_name).stem if file_name else Path(self.path).stem or "image"
        h, w = self.orig_shape
        written = []
        boxes = self.boxes.numpy()
        for box, class_id in zip(boxes.xyxy.tolist(), boxes.cls.tolist(), strict=True):
            x1, y1, x2, y2 = box
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            half_w, half_h = (x2 - x1) * gain / 2 + pad, (y2 - y1) * gain / 2 + pad
            left, top = max(int(cx - half_w), 0), max(int(cy - half_h), 0)
            right, bottom = min(int(np.ceil(cx + half_w)), w), min(int(np.ceil(cy + half_h)), h)
            if right <= left or bottom <= top:
                continue
            folder = Path(save_dir) / self._name(int(class_id))
            path = folder / f"{stem}.jpg"
            index = 2
            while path.exists():
                path, index = folder / f"{stem}{index}.jpg", index + 1
            ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(self.orig_img[top:bottom, left:right]))
            if ok:
                atomic_write_bytes(path, encoded.tobytes())
                written.append(str(path))
        return written

    def save_txt(self, path: str | Path, save_conf: bool = False) -> str:
        """Append one ``cls cx cy w h [conf]`` row per box (normalised to [0, 1], ``%g`` format) to ``path``.

        Nothing is written when there are no boxes (the file is not created), as in the reference.
        """
        path = Path(path)
        if not len(self):
            return str(path)
        boxes = self.boxes.numpy()
        rows = []
        for class_id, xywhn, score in zip(boxes.cls.tolist(), boxes.xywhn.tolist(), boxes.conf.tolist(), strict=True):
            values = [int(class_id), *xywhn] + ([score] if save_conf else [])
            rows.append(" ".join(f"{v:g}" for v in values))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write("\n".join(rows) + "\n")
        return str(path)

    def summary(self, normalize: bool = False, decimals: int = 5) -> list[dict[str, Any]]:
        """One dict per box: ``{name, class, confidence, box: {x1, y1, x2, y2}}`` (optionally normalised)."""
        boxes = self.boxes.numpy()
        coords = boxes.xyxyn if normalize else boxes.xyxy
        out = []
        for class_id, score, box in zip(boxes.cls.tolist(), boxes.conf.tolist(), coords.tolist(), strict=True):
            out.append({
                "name": self._name(int(class_id)),
                "class": int(class_id),
                "confidence": round(float(score), decimals),
                "box": {key: round(float(v), decimals) for key, v in zip(("x1", "y1", "x2", "y2"), box, strict=True)},
            })
        return out

    def to_json(self, normalize: bool = False, decimals: int = 5) -> str:
        """:meth:`summary` as an indented JSON string."""
        return json.dumps(self.summary(normalize=normalize, decimals=decimals), indent=2)

    def rows(self, normalize: bool = False, decimals: int = 5) -> list[dict[str, Any]]:
        """:meth:`summary` flattened, one dict per box: ``name, class, confidence, x1, y1, x2, y2``."""
        return [{"name": r["name"], "class": r["class"], "confidence": r["confidence"], **r["box"]}
                for r in self.summary(normalize=normalize, decimals=decimals)]

    def to_df(self, normalize: bool = False, decimals: int = 5) -> Any:
        """A ``pandas.DataFrame`` of :meth:`rows` (columns ``name, class, confidence, x1, y1, x2, y2``; the
        reference keeps the box as one dict column). pandas is optional: without it a one-line ``YolokitError``
        names ``pip install pandas``."""
        try:
            import pandas as pd
        except ImportError:
            from yolokit.errors import YolokitError

            raise YolokitError("Results.to_df() needs pandas, which is not installed: run pip install pandas (or "
                               "use Results.rows() / to_csv(), which need nothing)") from None
        columns = ["name", "class", "confidence", "x1", "y1", "x2", "y2"]
        return pd.DataFrame(self.rows(normalize=normalize, decimals=decimals), columns=columns)

    def to_csv(self, path: str | Path | None = None, normalize: bool = False, decimals: int = 5) -> str:
        """:meth:`rows` as CSV text with a header (no pandas needed); written atomically to ``path`` if given."""
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["name", "class", "confidence", "x1", "y1", "x2", "y2"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows(normalize=normalize, decimals=decimals))
        text = buffer.getvalue()
        if path is not None:
            from yolokit.utils.io import atomic_write_text

            atomic_write_text(path, text)
        return text

    def verbose(self) -> str:
        """Counts per class in class-id order, e.g. ``"4 persons, 1 bus, "``; ``"(no detections), "`` if empty."""
        if not len(self):
            return "(no detections), "
        classes = np.asarray(self.boxes.numpy().cls).astype(np.int64)
        ids, counts = np.unique(classes, return_counts=True)
        return "".join(f"{n} {_plural(self._name(int(c)), n)}, " for c, n in zip(ids, counts, strict=True))
