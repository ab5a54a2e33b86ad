"""edge.sources.files / edge.sources.frames: video files → validated Frames, and clear errors on bad files."""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from crossview_testing.edge_fakes import write_grey_video

from edge.sources.files import Source, SourceError, VideoFileSource
from edge.sources.frames import Frame
from models.errors import CrossviewError, InvalidInputError

SAMPLE_MP4 = "video/one-by-one-person-detection.mp4"  # 768x432, 10 fps, 1394 frames
SAMPLE_264 = "video/people-detection.264"  # raw H.264, 768x432, 596 frames, no timestamps
SAMPLE_MOOV_AT_END = "video/pedestrians__amirhossein.mp4"  # index ('moov') after the media data


def _sample(data_dir: Path, relpath: str) -> Path:
    path = data_dir / relpath
    if not path.is_file():
        pytest.skip(f"{relpath} is not in CROSSVIEW_DATA ({data_dir})")
    return path


@pytest.fixture(scope="module")
def synthetic_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames, 64x48, 10 fps, frame i filled with grey level 8*i (needs no shared data)."""
    return write_grey_video(tmp_path_factory.mktemp("video") / "synthetic.mp4")


# --- Frame -------------------------------------------------------------------------------------

_IMAGE = np.zeros((4, 6, 3), np.uint8)


@pytest.mark.parametrize(("kwargs", "error"), [
    ({}, None),
    ({"camera_id": ""}, "camera_id: expected a non-empty string"),
    ({"index": -1}, "index: expected an integer >= 0"),
    ({"index": 1.5}, "index: expected an integer >= 0"),
    ({"timestamp_s": math.nan}, "timestamp_s: expected a finite number >= 0"),
    ({"timestamp_s": -0.1}, "timestamp_s: expected a finite number >= 0"),
    ({"image": _IMAGE.astype(np.float32)}, "expected dtype uint8, got float32"),
    ({"image": _IMAGE[:, :, 0]}, "expected shape (H, W, 3) BGR, got shape (4, 6)"),
    ({"image": np.zeros((0, 6, 3), np.uint8)}, "expected a non-empty image"),
    ({"image": [[0]]}, "expected a BGR uint8 numpy array, got list"),
])
def test_frame_validates(kwargs: dict, error: str | None) -> None:
    args = {"camera_id": "cam", "index": 3, "timestamp_s": 0.3, "image": _IMAGE} | kwargs
    if error is None:
        frame = Frame(**args)
        assert (frame.height, frame.width) == (4, 6)
    else:
        with pytest.raises(InvalidInputError, match=re.escape(error)):
            Frame(**args)


# --- arguments and missing files ---------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error"), [
    ({"camera_id": ""}, "camera_id"),
    ({"stride": 0}, "stride: expected an integer >= 1"),
    ({"max_frames": 0}, "max_frames: expected an integer >= 1"),
    ({"start_frame": -1}, "start_frame: expected an integer >= 0"),
])
def test_invalid_arguments(tmp_path: Path, kwargs: dict, error: str) -> None:
    with pytest.raises(InvalidInputError, match=error):
        VideoFileSource(tmp_path / "x.mp4", **({"camera_id": "cam"} | kwargs))


def test_missing_file_names_camera_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.mp4"
    with pytest.raises(SourceError, match=r"camera 'door'.*not found.*nowhere\.mp4") as info:
        VideoFileSource(missing, camera_id="door")
    assert isinstance(info.value, CrossviewError)


def test_folder_is_not_a_video(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="camera 'door': not a file"):
        VideoFileSource(tmp_path, camera_id="door")


@pytest.mark.parametrize("content", [b"", b"this is not a video\n" * 100, os.urandom(20000)],
                         ids=["empty", "text", "random"])
def test_not_a_video_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=r"camera 'cam'.*bad\.mp4"):
        list(VideoFileSource(path, camera_id="cam"))


# --- a synthetic video (no shared data needed) -------------------------------------------------

def test_synthetic_stride_start_and_max(synthetic_video: Path) -> None:
    source = VideoFileSource(synthetic_video, "cam", stride=4, start_frame=2, max_frames=5)
    assert isinstance(source, Source)
    assert (source.width, source.height, source.fps, source.frame_count) == (64, 48, 10.0, 30)
    frames = list(source)
    assert [f.index for f in frames] == [2, 6, 10, 14, 18]
    assert [f.timestamp_s for f in frames] == pytest.approx([0.2, 0.6, 1.0, 1.4, 1.8])
    assert all(f.camera_id == "cam" and f.image.shape == (48, 64, 3) for f in frames)
    # the grey level identifies the frame: the decoder gave the frame the index claims
    assert [round(float(f.image.mean()) / 8) for f in frames] == [2, 6, 10, 14, 18]


def test_synthetic_to_the_end_and_twice(synthetic_video: Path) -> None:
    source = VideoFileSource(synthetic_video, "cam", stride=7)
    assert [f.index for f in source] == [0, 7, 14, 21, 28]
    assert [f.index for f in source] == [0, 7, 14, 21, 28]  # each iteration starts over


def test_start_past_the_end_is_a_clear_error(synthetic_video: Path) -> None:
    with pytest.raises(SourceError, match="gave no frames from frame 100"):
        list(VideoFileSource(synthetic_video, "cam", start_frame=100))


def test_close_ends_iteration_quietly(synthetic_video: Path) -> None:
    with VideoFileSource(synthetic_video, "cam") as source:
        seen = []
        for frame in source:
            seen.append(frame.index)
            if len(seen) == 3:
                source.close()
    assert seen == [0, 1, 2]


# --- real sample videos --------------------------------------------------------------------------

def test_sample_mp4(data_dir: Path) -> None:
    source = VideoFileSource(_sample(data_dir, SAMPLE_MP4), "lobby", stride=3, max_frames=5)
    assert (source.width, source.height, source.fps, source.frame_count) == (768, 432, 10.0, 1394)
    frames = list(source)
    assert [f.index for f in frames] == [0, 3, 6, 9, 12]
    assert [f.timestamp_s for f in frames] == pytest.approx([0.0, 0.3, 0.6, 0.9, 1.2])
    assert all(f.image.shape == (432, 768, 3) and f.image.dtype == np.uint8 for f in frames)


def test_sample_raw_h264(data_dir: Path) -> None:
    source = VideoFileSource(_sample(data_dir, SAMPLE_264), "room", start_frame=590)
    assert source.frame_count is None  # raw streams announce no (sane) frame count
    frames = list(source)
    assert [f.index for f in frames] == list(range(590, 596))  # ends cleanly at the stream's end
    stamps = [f.timestamp_s for f in frames]
    assert stamps == pytest.approx([i / source.fps for i in range(590, 596)])  # no container times
    assert all(f.image.shape == (432, 768, 3) for f in frames)


def test_truncated_mp4_ends_with_a_logged_error(data_dir: Path, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    data = _sample(data_dir, SAMPLE_MP4).read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 10])  # the index is at the start, so it still opens
    with caplog.at_level(logging.ERROR, logger="edge.sources.files"):
        frames = list(VideoFileSource(path, "lobby", stride=5))
    assert 0 < len(frames) < 1394 // 5
    assert all(f.image.shape == (432, 768, 3) for f in frames)
    assert any("truncated" in r.getMessage() and "lobby" in r.getMessage() for r in caplog.records)


def test_truncated_h264_ends_cleanly(data_dir: Path, tmp_path: Path) -> None:
    data = _sample(data_dir, SAMPLE_264).read_bytes()
    path = tmp_path / "truncated.264"
    path.write_bytes(data[: len(data) // 4])
    frames = list(VideoFileSource(path, "room", stride=10))
    assert 0 < len(frames) < 60
    assert all(f.image.shape == (432, 768, 3) for f in frames)


def test_truncated_mp4_without_its_index_is_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    data = _sample(data_dir, SAMPLE_MOOV_AT_END).read_bytes()
    path = tmp_path / "no-index.mp4"
    path.write_bytes(data[: len(data) // 2])  # cuts off the 'moov' index at the end
    with pytest.raises(SourceError, match=r"camera 'street': cannot open .*no-index\.mp4"):
        VideoFileSource(path, "street")


def test_header_only_mp4_gives_no_frames(data_dir: Path, tmp_path: Path) -> None:
    data = _sample(data_dir, SAMPLE_MP4).read_bytes()
    path = tmp_path / "header-only.mp4"
    path.write_bytes(data[:20000])  # the index, none of the media data
    with pytest.raises(SourceError, match=r"camera 'lobby': .*header-only\.mp4 gave no frames"):
        list(VideoFileSource(path, "lobby"))


@pytest.mark.parametrize("relpath", [SAMPLE_MP4, SAMPLE_264])
def test_corrupt_bytes_mid_stream_do_not_crash(data_dir: Path, tmp_path: Path, relpath: str) -> None:
    data = bytearray(_sample(data_dir, relpath).read_bytes())
    rng = np.random.default_rng(0)
    for offset in rng.integers(30000, len(data) - 1000, size=60):
        data[offset: offset + 300] = rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
    path = tmp_path / f"corrupt{Path(relpath).suffix}"
    path.write_bytes(bytes(data))
    try:
        frames = list(VideoFileSource(path, "cam", stride=7))
    except SourceError:  # a clear error is acceptable; anything else is not
        return
    assert frames, "a source that yields nothing must raise SourceError"
    assert all(f.image.shape == (432, 768, 3) and f.image.dtype == np.uint8 for f in frames)
    assert [f.index for f in frames] == sorted({f.index for f in frames})
