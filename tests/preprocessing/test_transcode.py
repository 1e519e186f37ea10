"""Transcoding: short side, constant frame rate, codecs, determinism, failure statuses."""

from __future__ import annotations

import io

import av
import pytest

from preprocessing.transcode import (TranscodeSettings, VideoError, inspect, output_size,
                                     transcode)
from tests.preprocessing.conftest import FPS, FRAMES, make_video


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("src") / "v.mp4").read_bytes()


@pytest.mark.parametrize("codec", ["h264", "vp9", "mjpeg"])
def test_transcode_resizes_the_short_side_and_is_deterministic(source, codec):
    s = TranscodeSettings(codec=codec, short_side=16, fps=FPS, keyframe_interval=4, min_frames=4)
    out, info = transcode(source, s)
    assert (info.width, info.height, info.nframes) == (26, 16, FRAMES)
    assert (info.src_width, info.src_height) == (40, 24)
    assert inspect(out) == (FRAMES, 26, 16, {"h264": "h264", "vp9": "vp9", "mjpeg": "mjpeg"}[codec])
    assert transcode(source, s)[0] == out  # same input and settings, same bytes
    with av.open(io.BytesIO(out)) as c:
        assert not c.streams.audio and float(c.streams.video[0].average_rate) == pytest.approx(FPS)


def test_h264_output_has_the_configured_keyframe_interval(source):
    out, _ = transcode(source, TranscodeSettings(short_side=16, fps=FPS, keyframe_interval=4,
                                                 min_frames=4))
    with av.open(io.BytesIO(out)) as c:
        keys = [p.is_keyframe for p in c.demux(c.streams.video[0]) if p.size]
    assert [i for i, k in enumerate(keys) if k] == [0, 4, 8]


@pytest.mark.parametrize("fps,expected", [(FPS, FRAMES), (FPS / 2, FRAMES // 2), (FPS * 2, FRAMES * 2)])
def test_constant_frame_rate_drops_or_repeats_frames(source, fps, expected):
    _, info = transcode(source, TranscodeSettings(short_side=16, fps=fps, min_frames=1))
    assert info.nframes == expected and info.fps == fps


def test_copy_remuxes_without_reencoding(source):
    out, info = transcode(source, TranscodeSettings(codec="copy", min_frames=1))
    assert (info.codec, info.width, info.height, info.nframes) == ("h264", 40, 24, FRAMES)


@pytest.mark.parametrize("data,status", [
    (b"", "corrupt"), (b"not a video at all\n" * 10, "corrupt"), ("truncated", "corrupt"),
    ("short", "too_short")])
def test_unusable_videos_raise_their_status(source, data, status):
    if data == "truncated":
        data = source[: len(source) // 2]
    if data == "short":
        data = source
    with pytest.raises(VideoError) as err:
        transcode(data, TranscodeSettings(short_side=16, min_frames=FRAMES + 1))
    assert err.value.status == status


def test_output_size_keeps_aspect_and_even_sides():
    assert output_size(320, 240, 128) == (170, 128)
    assert output_size(240, 320, 128) == (128, 170)
    assert output_size(41, 41, 17) == (16, 16)


def test_unknown_codec_is_rejected():
    with pytest.raises(ValueError, match="h264"):
        TranscodeSettings(codec="av1")
