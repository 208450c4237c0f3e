"""Video sources: lazy frame-by-frame decoding, vid_stride, constant memory, videos inside folders."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from yolokit.data.sources import open_source
from yolokit.data.video import iter_video, strided_count, video_frame_count
from yolokit.errors import SourceError

STEP = 12  # grey-level step used to encode the frame number in the picture


def write_video(path: Path, frames: int, size_wh: tuple[int, int] = (64, 48)) -> Path:
    """MJPG .avi whose frame n (1-based) has top half grey (n % 20) * STEP and bottom half (n // 20) * STEP."""
    width, height = size_wh
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (width, height))
    assert writer.isOpened()
    for n in range(1, frames + 1):
        image = np.empty((height, width, 3), np.uint8)
        image[: height // 2] = (n % 20) * STEP
        image[height // 2 :] = (n // 20) * STEP
        writer.write(image)
    writer.release()
    return path


def frame_number(image: np.ndarray) -> int:
    """Read back the number painted by write_video (MJPG is lossy: flat areas come back within a few levels)."""
    height = image.shape[0]
    low = int(round(float(image[2 : height // 2 - 2].mean()) / STEP))
    high = int(round(float(image[height // 2 + 2 : -2].mean()) / STEP))
    return high * 20 + low


@pytest.fixture(scope="module")
def video300(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.avi", 300)


def test_all_300_frames_in_order(video300):
    source = open_source(video300)
    assert source.is_video and not source.single and source.count == 300
    frames, indices = [], []
    for item in source:
        assert item.kind == "video" and item.path == str(video300) and item.frames == 300
        assert item.image.shape == (48, 64, 3) and item.image.dtype == np.uint8
        assert frame_number(item.image) == item.frame  # the picture is the frame the item claims
        frames.append(item.frame)
        indices.append(item.index)
    assert frames == list(range(1, 301))
    assert indices == list(range(300))


def test_vid_stride_3_gives_100_frames(video300):
    source = open_source(video300, vid_stride=3)
    assert source.count == 100
    items = list(source)
    assert [i.frame for i in items] == list(range(1, 301, 3))
    assert [frame_number(i.image) for i in items] == list(range(1, 301, 3))


def test_stride_count_rounds_up():
    assert strided_count(300, 3) == 100 and strided_count(10, 3) == 4 and strided_count(None, 2) is None


def _peak_while(iterate) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        iterate()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_streaming_a_long_video_uses_constant_memory(tmp_path):
    path = write_video(tmp_path / "big.avi", 300, (160, 120))  # 57.6 kB per decoded frame, 17 MB for all
    frame_bytes = 160 * 120 * 3
    seen = []

    def stream() -> None:
        for item in open_source(path):
            seen.append(item.frame)

    kept = []

    def keep() -> None:
        kept.extend(item.image for item in open_source(path))

    streaming_peak = _peak_while(stream)
    keeping_peak = _peak_while(keep)
    assert seen == list(range(1, 301))
    assert keeping_peak > 200 * frame_bytes  # control: tracemalloc does see the decoded frames
    assert streaming_peak < 20 * frame_bytes  # ~1 MB: flat, not proportional to the 300 frames


def test_video_frame_count_and_early_stop(video300):
    assert video_frame_count(video300) == 300
    iterator = iter_video(video300)
    first = [next(iterator)[0] for _ in range(3)]
    iterator.close()  # releases the capture without decoding the rest
    assert first == [1, 2, 3]


def test_folder_with_images_and_videos(tmp_path):
    write_video(tmp_path / "clip2.avi", 5)
    cv2.imwrite(str(tmp_path / "clip10.png"), np.full((4, 4, 3), 9, np.uint8))
    cv2.imwrite(str(tmp_path / "clip1.jpg"), np.full((4, 4, 3), 9, np.uint8))
    source = open_source(tmp_path, vid_stride=2)
    assert source.is_video and source.count == 1 + 3 + 1
    items = list(source)
    assert [(Path(i.path).name, i.kind, i.frame) for i in items] == [
        ("clip1.jpg", "image", None), ("clip2.avi", "video", 1), ("clip2.avi", "video", 3),
        ("clip2.avi", "video", 5), ("clip10.png", "image", None)]
    assert [i.index for i in items] == list(range(5))


def test_corrupt_video_in_folder_warns_and_single_corrupt_video_errors(tmp_path):
    write_video(tmp_path / "good.avi", 4)
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x01 not a video" * 50)
    source = open_source(tmp_path)
    assert [i.frame for i in source] == [1, 2, 3, 4]
    assert len(source.warnings) == 1 and "broken.mp4" in source.warnings[0]
    with pytest.raises(SourceError, match=r"cannot read video .*broken\.mp4"):
        list(open_source(tmp_path / "broken.mp4"))
