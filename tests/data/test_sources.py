"""Predict sources: image decoding rules, directories, globs, lists, arrays, PIL images and tensors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from yolokit.data.sources import (
    Source,
    SourceItem,
    apply_orientation,
    natural_key,
    open_source,
    pil_to_bgr,
    read_image,
)
from yolokit.errors import ConfigError, SourceError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "images"

# A 2x3 BGR image with distinct, hand-chosen colours.
KNOWN_BGR = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]],
                      [[10, 20, 30], [200, 100, 50], [7, 7, 7]]], dtype=np.uint8)


def write_png(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


# ------------------------------------------------------------------------------------------------ read_image
def test_png_known_colours_exact(tmp_path):
    path = write_png(tmp_path / "known.png", KNOWN_BGR)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (2, 3, 3)
    np.testing.assert_array_equal(image, KNOWN_BGR)
    assert image[0, 2].tolist() == [0, 0, 255]  # red pixel, BGR order


def test_rgb_png_written_by_pil_comes_back_bgr(tmp_path):
    Image.new("RGB", (4, 2), (250, 10, 5)).save(tmp_path / "red.png")
    assert read_image(tmp_path / "red.png")[1, 3].tolist() == [5, 10, 250]


@pytest.mark.parametrize("quality", [95, 60])
def test_jpeg_decodes_exactly_like_cv2_imread(tmp_path, quality):
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (5, 5), 0)
    path = tmp_path / "a.jpg"
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    np.testing.assert_array_equal(read_image(path), cv2.imread(str(path)))


def test_fixture_jpegs_match_cv2_imread():
    paths = sorted(FIXTURES.glob("*.jpg"))
    assert paths
    for path in paths:
        np.testing.assert_array_equal(read_image(path), cv2.imread(str(path)))


def test_gray_png_becomes_three_equal_channels(tmp_path):
    gray = np.array([[0, 17, 255], [128, 64, 3]], dtype=np.uint8)
    image = read_image(write_png(tmp_path / "gray.png", gray))
    assert image.shape == (2, 3, 3)
    for c in range(3):
        np.testing.assert_array_equal(image[:, :, c], gray)


def test_rgba_png_drops_alpha(tmp_path):
    rgba = np.zeros((1, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 200, 100, 0)  # fully transparent, colour kept as stored (not composited)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png").tolist() == [[[0, 0, 255], [100, 200, 0]]]


def test_16bit_gray_png_is_shifted_to_8bit(tmp_path):
    values = np.array([[0, 255, 256, 257], [5000, 32768, 65280, 65535]], dtype=np.uint16)
    image = read_image(write_png(tmp_path / "g16.png", values))
    expected = [[0, 0, 1, 1], [19, 128, 255, 255]]  # value >> 8, worked by hand
    assert image.dtype == np.uint8
    for c in range(3):
        assert image[:, :, c].tolist() == expected


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_colour_is_shifted_to_8bit(tmp_path, suffix):
    bgr16 = np.array([[[65535, 512, 0], [1000, 40000, 300]]], dtype=np.uint16)
    path = tmp_path / f"c16{suffix}"
    assert cv2.imwrite(str(path), bgr16)
    assert read_image(path).tolist() == [[[255, 2, 0], [3, 156, 1]]]


def test_exif_orientation_6_rotates_jpeg(tmp_path):
    # 16x32 (H x W) image: red block top-left, green block top-right, rest black.
    rgb = np.zeros((16, 32, 3), dtype=np.uint8)
    rgb[:8, :8] = (255, 0, 0)
    rgb[:8, 24:] = (0, 255, 0)
    pil = Image.fromarray(rgb)
    exif = pil.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "exif6.jpg"
    pil.save(path, exif=exif, quality=100)

    image = read_image(path)
    assert image.shape == (32, 16, 3)  # (H, W) -> (W, H)
    # After a clockwise turn the top-left corner goes to the top-right and the top-right to the bottom-right.
    # (block centres only: JPEG chroma subsampling blurs the block edges)
    assert np.abs(image[2:6, 10:14].astype(int) - [0, 0, 255]).max() < 8  # red, BGR
    assert np.abs(image[26:30, 10:14].astype(int) - [0, 255, 0]).max() < 8  # green
    assert image[2:6, 2:6].max() < 8 and image[26:30, 2:6].max() < 8  # black where nothing was
    np.testing.assert_array_equal(image, cv2.imread(str(path)))  # same as cv2.imread, which applies EXIF


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_every_orientation_matches_pil_exif_transpose(tmp_path, fmt):
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for orientation in range(1, 9):
        pil = Image.fromarray(rgb)
        exif = pil.getexif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.{fmt.lower()}"
        pil.save(path, format=fmt, exif=exif, **({"lossless": True} if fmt == "WEBP" else {}))
        with Image.open(path) as opened:
            expected = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))[:, :, ::-1]
        np.testing.assert_array_equal(read_image(path), expected, err_msg=f"{fmt} orientation {orientation}")


def test_apply_orientation_matches_pil_for_all_tags():
    rgb = np.random.default_rng(2).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    for orientation in range(1, 9):
        pil = Image.fromarray(rgb)
        pil.getexif()[0x0112] = orientation
        expected = np.asarray(ImageOps.exif_transpose(pil))
        np.testing.assert_array_equal(apply_orientation(rgb, orientation), expected, err_msg=str(orientation))


def test_non_ascii_path(tmp_path):
    folder = tmp_path / "données_画像"
    folder.mkdir()
    path = folder / "bild_ü.png"
    path.write_bytes(cv2.imencode(".png", KNOWN_BGR)[1].tobytes())  # cv2.imwrite cannot write non-ASCII paths
    np.testing.assert_array_equal(read_image(path), KNOWN_BGR)
    assert [item.path for item in open_source(folder)] == [str(path)]


def test_gif_falls_back_to_a_decoder_that_reads_it(tmp_path):
    Image.new("RGB", (3, 2), (0, 0, 255)).save(tmp_path / "blue.gif")
    assert read_image(tmp_path / "blue.gif")[0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize("content", [b"", b"\xff\xd8 definitely not a jpeg" * 10, bytes(range(256)) * 4])
def test_corrupt_single_image_is_an_error(tmp_path, content):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=r"cannot read image .*bad\.jpg: "):
        read_image(path)
    source = open_source(path)
    assert source.single
    with pytest.raises(SourceError, match="bad.jpg"):
        list(source)


# ----------------------------------------------------------------------------------- directories, globs, paths
def make_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for n in (10, 2, 1):
        write_png(folder / f"img{n}.png", np.full((4, 5, 3), n, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()
    write_png(folder / "sub" / "img3.png", np.full((4, 5, 3), 3, np.uint8))
    return folder


def test_directory_natural_order_and_contents(tmp_path):
    folder = make_folder(tmp_path)
    source = open_source(folder)
    assert not source.single and not source.is_video and source.count == 3 and len(source) == 3
    items = list(source)
    assert [Path(i.path).name for i in items] == ["img1.png", "img2.png", "img10.png"]
    assert [int(i.image[0, 0, 0]) for i in items] == [1, 2, 10]
    assert [i.index for i in items] == [0, 1, 2]
    assert all(i.kind == "image" and i.frame is None and i.frames is None for i in items)
    assert source.warnings == []


def test_directory_with_corrupt_jpeg_warns_and_goes_on(tmp_path, caplog):
    folder = make_folder(tmp_path)
    (folder / "img5.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    source = open_source(folder)
    with caplog.at_level("WARNING"):
        items = list(source)
    assert [Path(i.path).name for i in items] == ["img1.png", "img2.png", "img10.png"]
    assert [i.index for i in items] == [0, 1, 2]
    assert len(source.warnings) == 1 and "img5.jpg" in source.warnings[0]
    assert "img5.jpg" in caplog.text


def test_directory_of_only_corrupt_files_is_an_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"junk")
    with pytest.raises(SourceError, match="no readable image"):
        list(open_source(tmp_path))


def test_glob_pattern_recursive_and_sorted(tmp_path):
    folder = make_folder(tmp_path)
    items = list(open_source(str(folder / "**" / "img*.png")))
    assert [Path(i.path).name for i in items] == ["img1.png", "img2.png", "img10.png", "img3.png"]
    assert [Path(i.path).name for i in open_source(str(folder / "img1*"))] == ["img1.png", "img10.png"]


def test_empty_and_missing_sources_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images or videos in directory"):
        open_source(tmp_path / "empty")
    with pytest.raises(SourceError, match="no images or videos match"):
        open_source(str(tmp_path / "*.jpg"))
    with pytest.raises(SourceError, match="no such file or directory: .*nope.jpg"):
        open_source(tmp_path / "nope.jpg")
    with pytest.raises(SourceError, match="empty list"):
        open_source([])


@pytest.mark.parametrize("bad", [42, b"bytes", {"a": 1}, "rtsp://cam/stream", [[np.zeros((2, 2), np.uint8)]]])
def test_unsupported_source_lists_supported_kinds(bad):
    with pytest.raises(SourceError, match="supported sources: image or video path, directory, glob"):
        open_source(bad)


def test_natural_key():
    names = ["a10.jpg", "a2.jpg", "A1.jpg", "b.jpg", "a02.jpg"]
    assert sorted(names, key=natural_key) == ["A1.jpg", "a02.jpg", "a2.jpg", "a10.jpg", "b.jpg"]


def test_vid_stride_validation():
    with pytest.raises(ConfigError, match="vid_stride"):
        Source(np.zeros((2, 2, 3), np.uint8), vid_stride=0)


# ----------------------------------------------------------------------------------------- in-memory inputs
def only(source) -> SourceItem:
    items = list(source)
    assert len(items) == 1
    return items[0]


def test_numpy_bgr_passes_through_unchanged():
    item = only(open_source(KNOWN_BGR))
    assert item.kind == "array" and item.path == "image0.jpg" and item.index == 0
    np.testing.assert_array_equal(item.image, KNOWN_BGR)


def test_numpy_gray_bgra_uint16_and_stack():
    gray = np.array([[0, 9], [200, 255]], np.uint8)
    assert only(open_source(gray)).image.tolist() == [[[v] * 3 for v in row] for row in gray.tolist()]
    bgra = np.dstack([KNOWN_BGR, np.zeros((2, 3), np.uint8)])
    np.testing.assert_array_equal(only(open_source(bgra)).image, KNOWN_BGR)
    assert only(open_source(np.full((1, 1, 3), 0x1234, np.uint16))).image.tolist() == [[[0x12] * 3]]
    items = list(open_source(np.stack([KNOWN_BGR, KNOWN_BGR[::-1]])))
    assert [i.path for i in items] == ["image0.jpg", "image1.jpg"]
    np.testing.assert_array_equal(items[1].image, KNOWN_BGR[::-1])


@pytest.mark.parametrize("array, message", [
    (np.zeros((4, 4, 3), np.float32), "uint8"),
    (np.zeros((3, 4, 4, 4, 1), np.uint8), "shape"),
    (np.zeros((4, 4, 2), np.uint8), "shape"),
    (np.zeros((0, 4, 3), np.uint8), "shape"),
])
def test_bad_arrays_are_errors(array, message):
    with pytest.raises(SourceError, match=message):
        open_source(array)


def test_pil_modes_convert_to_bgr():
    rgb = KNOWN_BGR[:, :, ::-1].copy()
    np.testing.assert_array_equal(only(open_source(Image.fromarray(rgb, "RGB"))).image, KNOWN_BGR)
    rgba = Image.fromarray(np.dstack([rgb, np.full((2, 3), 7, np.uint8)]), "RGBA")
    np.testing.assert_array_equal(pil_to_bgr(rgba), KNOWN_BGR)
    gray = Image.fromarray(np.array([[1, 2], [3, 250]], np.uint8), "L")
    assert pil_to_bgr(gray)[:, :, 1].tolist() == [[1, 2], [3, 250]]
    i16 = Image.fromarray(np.array([[65535, 256, 255]], np.uint16))
    assert i16.mode.startswith("I;16")
    assert pil_to_bgr(i16).tolist() == [[[255] * 3, [1] * 3, [0] * 3]]
    assert pil_to_bgr(Image.fromarray(np.array([[70000, 4660]], np.int32), "I")).tolist() == [[[255] * 3, [18] * 3]]
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.putpixel((1, 0), 1)
    assert pil_to_bgr(palette).tolist() == [[[0, 0, 0], [30, 20, 10]]]
    item = only(open_source(gray))
    assert item.kind == "pil" and item.path == "image0.jpg"


def test_tensor_chw_and_bchw():
    rgb = torch.zeros(3, 2, 2)
    rgb[0, 0, 0] = 1.0  # red
    rgb[2, 1, 1] = 0.5  # half blue
    rgb[1, 0, 1] = 0.2  # 51 green
    item = only(open_source(rgb))
    assert item.kind == "tensor" and item.tensor is rgb
    assert item.image.tolist() == [[[0, 0, 255], [0, 51, 0]], [[0, 0, 0], [128, 0, 0]]]
    batch = torch.stack([rgb, torch.ones(3, 2, 2)])
    source = open_source(batch)
    items = list(source)
    assert not source.single and source.count == 2
    assert [i.path for i in items] == ["image0.jpg", "image1.jpg"]
    assert items[1].image.min() == 255 and torch.equal(items[1].tensor, batch[1])


@pytest.mark.parametrize("tensor, message", [
    (torch.rand(3, 2, 4) * 255 + 2, r"\[0, 1\]"),
    (torch.zeros(1, 4, 4, 4), "shape"),
    (torch.zeros(4, 4, 3), "shape"),
    (torch.zeros(3, 4, 4, dtype=torch.uint8), "float"),
])
def test_bad_tensors_are_errors(tensor, message):
    with pytest.raises(SourceError, match=message):
        open_source(tensor)


def test_mixed_list_keeps_order_and_indices(tmp_path):
    path = write_png(tmp_path / "x.png", KNOWN_BGR)
    pil = Image.new("RGB", (2, 2), (0, 0, 255))
    source = open_source([str(path), KNOWN_BGR, pil, Path(path)])
    assert not source.single and source.count == 4
    items = list(source)
    assert [(i.kind, i.path, i.index) for i in items] == [
        ("image", str(path), 0), ("array", "image0.jpg", 1), ("pil", "image1.jpg", 2), ("image", str(path), 3)]
    assert items[2].image[0, 0].tolist() == [255, 0, 0]


def test_list_with_corrupt_file_warns(tmp_path):
    good = write_png(tmp_path / "good.png", KNOWN_BGR)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    source = open_source([bad, good])
    assert [i.path for i in source] == [str(good)]
    assert "bad.png" in source.warnings[0]


def test_source_is_reiterable_and_open_source_passes_through(tmp_path):
    source = open_source(make_folder(tmp_path))
    assert open_source(source) is source
    assert [i.path for i in source] == [i.path for i in source]
