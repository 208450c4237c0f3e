"""Decoding images to the one format every predict and dataset path uses: (H, W, 3) uint8 BGR.

Ordinary 8-bit JPEG/PNG decode with OpenCV exactly like ``cv2.imread`` (the reference implementation's decoder,
so pixels match it); grayscale becomes 3 channels, alpha is dropped (no compositing), 16-bit data is shifted to
8 bits (``v >> 8``), float data is clipped to [0, 1] and scaled. EXIF orientation is applied for every container,
by OpenCV where this build does it and through PIL otherwise. PIL images, numpy arrays and torch tensors are
converted to the same format. Unreadable input raises ``SourceError`` naming it. An image whose header declares
more than ``MAX_IMAGE_PIXELS`` pixels is refused before decoding (so a few-KB file cannot decode to gigabytes).
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import numpy as np

from yolokit.errors import SourceError

_ORIENTATION_TAG = 0x0112
MAX_IMAGE_PIXELS = 100_000_000  # width * height refused beyond this, from the header, before any pixel is decoded
MAX_IMAGE_BYTES = 2**30  # encoded files larger than this are refused before they are read


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 BGR (conversion rules in the module docstring).

    Works with non-ASCII paths. 8-bit JPEG/PNG decode exactly like ``cv2.imread(path)``. Formats OpenCV cannot
    read fall back to Pillow. Raises ``SourceError('cannot read image <path>: <reason>')``.
    """
    try:
        size = Path(path).stat().st_size
        if size > MAX_IMAGE_BYTES:
            raise SourceError(f"cannot read image {path}: {size} bytes exceeds the {MAX_IMAGE_BYTES}-byte limit for "
                              "an image file")  # fmt: skip
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as err:
        raise SourceError(f"cannot read image {path}: {err.strerror or err}") from None
    return decode_image(data, str(path))


def check_image_size(buffer: bytes | np.ndarray, name: str = "<bytes>") -> tuple[int, int] | None:
    """``(h, w)`` from the encoded header (Pillow's lazy open: no pixel is decoded), refusing images of more than
    ``MAX_IMAGE_PIXELS`` pixels with a ``SourceError``; None when Pillow does not know the format (OpenCV's own
    limits then apply)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(buffer)) as img:
                width, height = img.size
    except Image.DecompressionBombError as err:  # Pillow's own header check fired first (over 2 x its limit)
        raise SourceError(f"cannot read image {name}: {str(err).split(',')[0]}, more than the {MAX_IMAGE_PIXELS} "
                          "pixels yolokit decodes (a decompression bomb or a huge image); downscale it first") \
            from None
    except (UnidentifiedImageError, OSError, ValueError, TypeError, SyntaxError, EOFError):
        return None
    if width * height > MAX_IMAGE_PIXELS:
        raise SourceError(f"cannot read image {name}: its header declares {width}x{height} pixels, more than the "
                          f"{MAX_IMAGE_PIXELS} yolokit decodes (a decompression bomb or a huge image); "
                          "downscale it first")  # fmt: skip
    return height, width


def decode_image(data: bytes | np.ndarray, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, TIFF, ...) to ``(H, W, 3)`` uint8 BGR; ``name`` is used in errors."""
    import cv2

    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    if buffer.size == 0:
        raise SourceError(f"cannot read image {name}: the file is empty")
    check_image_size(buffer, name)
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    except cv2.error:
        image = None
    if image is None:
        return _decode_with_pil(buffer, name)
    image = _to_uint8(image)
    kind = _container(buffer)
    if kind is not None and not _cv2_applies_orientation(kind):
        image = apply_orientation(image, _read_orientation(buffer))
    return image


def _decode_with_pil(buffer: np.ndarray, name: str) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(buffer.tobytes())) as img:
            return pil_to_bgr(ImageOps.exif_transpose(img))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        reason = "not an image format OpenCV or Pillow can decode" if isinstance(err, UnidentifiedImageError) else err
        raise SourceError(f"cannot read image {name}: {reason}; check the file is a valid image") from None


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """OpenCV output (any depth, 1/3/4 channels) -> (H, W, 3) uint8."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.rint(np.clip(image.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    return _to_three_channels(image)


def _to_three_channels(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    return np.ascontiguousarray(image)


def _container(buffer: np.ndarray) -> str | None:
    """Image container that can carry an EXIF orientation, from the magic bytes (None for others)."""
    head = buffer[:12].tobytes()
    if head.startswith(b"\xff\xd8"):
        return "JPEG"
    if head.startswith(b"\x89PNG"):
        return "PNG"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF"
    return None


@functools.cache
def _cv2_applies_orientation(container: str) -> bool:
    """Whether this OpenCV build rotates ``container`` images by their EXIF tag (decided once, on a 2x1 probe)."""
    import cv2
    from PIL import Image

    probe = Image.new("RGB", (2, 1))
    exif = probe.getexif()
    exif[_ORIENTATION_TAG] = 6
    encoded = io.BytesIO()
    probe.save(encoded, format=container, exif=exif)
    decoded = cv2.imdecode(np.frombuffer(encoded.getvalue(), np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    return decoded is not None and decoded.shape[:2] == (2, 1)


def _read_orientation(buffer: np.ndarray) -> int:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(buffer.tobytes())) as img:
            return int(img.getexif().get(_ORIENTATION_TAG, 1))
    except (UnidentifiedImageError, OSError, ValueError, TypeError):
        return 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip ``image`` (H, W, C) so it displays upright for EXIF ``orientation`` 1..8 (others: unchanged)."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: a[::-1].transpose(1, 0, 2),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: a[:, ::-1].transpose(1, 0, 2),
    }
    op = ops.get(orientation)
    return image if op is None else np.ascontiguousarray(op(image))


# ----------------------------------------------------------------------------------------- in-memory conversions
def array_to_bgr(array: np.ndarray, name: str = "array") -> np.ndarray:
    """Numpy image -> (H, W, 3) uint8 BGR. Accepts (H, W), (H, W, 1), (H, W, 3) BGR, (H, W, 4) BGRA; uint8/uint16."""
    _check_array(array, name)
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    return _to_three_channels(array)


def _check_array(array: np.ndarray, name: str) -> None:
    if array.dtype not in (np.uint8, np.uint16):
        raise SourceError(f"expected a uint8 (or uint16) image array for {name}; found dtype {array.dtype}; "
                          "convert with (array * 255).clip(0, 255).astype(np.uint8) for data in [0, 1]")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))) or 0 in array.shape:
        raise SourceError(f"expected an image array of shape (H, W, 3) BGR, (H, W) or (H, W, 4) for {name}; "
                          f"found shape {tuple(array.shape)}; use HWC channel order")


def pil_to_bgr(img: Any) -> np.ndarray:
    """PIL image (any mode: RGB, L, RGBA, P, I;16, I, F, CMYK, ...) -> (H, W, 3) uint8 BGR.

    ``I;16*`` and ``I`` are taken as 16-bit (``v >> 8``, ``I`` clipped to 0..65535); ``F`` as 0..255 (rounded);
    alpha is dropped; other modes go through ``img.convert('RGB')``.
    """
    mode = img.mode
    if mode.startswith("I;16"):
        gray = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
    elif mode == "I":
        gray = (np.clip(np.asarray(img), 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)
    elif mode == "F":
        gray = np.rint(np.clip(np.asarray(img), 0, 255)).astype(np.uint8)
    elif mode == "L":
        gray = np.asarray(img)
    else:
        rgb = np.asarray(img if mode in ("RGB", "RGBA") else img.convert("RGB"))
        return np.ascontiguousarray(rgb[:, :, 2::-1])
    return _to_three_channels(gray)


def tensor_to_bgr(tensor: Any) -> np.ndarray:
    """(3, H, W) float RGB tensor in [0, 1] -> (H, W, 3) uint8 BGR (``round(v * 255)``)."""
    rgb = (tensor.detach().float().clamp(0, 1) * 255).round().to("cpu").byte().permute(1, 2, 0).numpy()
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _check_tensor(tensor: Any) -> None:
    shape = tuple(tensor.shape)
    if tensor.ndim not in (3, 4) or shape[-3] != 3 or 0 in shape:
        raise SourceError(f"expected a torch tensor of shape (3, H, W) or (B, 3, H, W) RGB; found shape {shape}; "
                          "permute HWC images with .permute(2, 0, 1)")
    if not tensor.is_floating_point():
        raise SourceError(f"expected a float tensor with values in [0, 1]; found dtype {tensor.dtype}; "
                          "use tensor.float() / 255")
    low, high = float(tensor.min()), float(tensor.max())
    if low < 0.0 or high > 1.0 + 1e-6:
        raise SourceError(f"expected tensor values in [0, 1]; found min {low:g}, max {high:g}; "
                          "divide 0..255 data by 255")


# ---------------------------------------------------------------------------------------------------- resolving
