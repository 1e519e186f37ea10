"""The one MP4 encoder: arrays and decoded frames in, decodable MP4 out, every codec."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from pipeline.media.encode import ENCODERS, X264_DETERMINISTIC, encode_mp4

LEVELS = [20 + 15 * t for t in range(12)]  # one grey level per frame, to tell frames apart


def grey_frames() -> np.ndarray:
    return np.stack([np.full((32, 48, 3), level, np.uint8) for level in LEVELS])  # (T, H, W, 3)


def decode(data: bytes) -> tuple[list[av.VideoFrame], list[bool], float]:
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.video[0]
        keys = [p.is_keyframe for p in c.demux(stream) if p.size]
        c.seek(0)
        return list(c.decode(stream)), keys, float(stream.average_rate)


@pytest.mark.parametrize("codec", list(ENCODERS))
def test_arrays_round_trip_through_pyav_decode(codec):
    frames, _, rate = decode(encode_mp4(grey_frames(), fps=10, codec=codec, gop=4))
    assert len(frames) == len(LEVELS) and rate == pytest.approx(10)
    assert (frames[0].width, frames[0].height) == (48, 32)
    means = [f.to_ndarray(format="gray").mean() for f in frames]
    assert np.allclose(means, LEVELS, atol=3), means


def test_decoded_frames_are_re_encoded_with_fresh_timestamps_and_types():
    """Decoded frames carry their source pts and I/P types; the encoder restarts both."""
    options = {"x264-params": f"{X264_DETERMINISTIC}:keyint=4:min-keyint=4:scenecut=0"}
    source, _, _ = decode(encode_mp4(grey_frames(), fps=25, codec="h264", gop=12))
    again = encode_mp4(source[3:], fps=15, options=options, gop=4, bitexact=True)
    frames, keys, rate = decode(again)
    assert [round(f.time * 15) for f in frames] == list(range(9)) and rate == pytest.approx(15)
    assert [i for i, k in enumerate(keys) if k] == [0, 4, 8]
    source, _, _ = decode(encode_mp4(grey_frames(), fps=25, codec="h264", gop=12))  # fresh frames
    assert encode_mp4(source[3:], fps=15, options=options, gop=4, bitexact=True) == again


def test_bad_codec_or_no_frames_is_rejected():
    with pytest.raises(ValueError, match="codec='av1'.*h264"):
        encode_mp4(grey_frames(), fps=10, codec="av1")
    with pytest.raises(ValueError, match="no frames"):
        encode_mp4(grey_frames()[:0], fps=10)
