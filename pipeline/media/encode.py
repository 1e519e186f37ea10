"""Frames -> MP4 bytes (PyAV): the encoder of the demo data, the test fixtures and preprocessing.

This module owns the codec table and the encode loop; each caller keeps its own encoder options
(the fixtures' fast defaults, the deterministic single-thread settings of the demo data and of
the sharder), passed in as they are.
"""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Sequence

import av
import numpy as np

ENCODERS = {"h264": "libx264", "vp9": "libvpx-vp9", "mjpeg": "mjpeg"}

# x264 settings that give the same bytes on every run: one thread, no B-frames, no macroblock
# tree (x264's mbtree pass was seen to give other bytes from run to run on identical input).
X264_DETERMINISTIC = "threads=1:lookahead-threads=1:bframes=0:mbtree=0"


def encode_mp4(frames: Sequence[np.ndarray | av.VideoFrame], *, fps: float, codec: str = "h264",
               options: dict[str, str] | None = None, gop: int | None = None,
               bitexact: bool = False) -> bytes:
    """Frames of one size -> MP4 bytes holding one video stream at constant `fps`.

    frames: uint8 (H, W, 3) RGB arrays (so a (T, H, W, 3) array) or `av.VideoFrame`s; frame i
        gets pts i, and decoded frames lose their picture types (which would force the encoder's).
    options: encoder options, as the encoder names them (x264's `crf`, libvpx's `deadline`, ...).
    gop: the largest keyframe interval; None keeps the encoder's default.
    bitexact: mux with `+bitexact` (no muxer version in the file), for bytes compared across runs.
    """
    if codec not in ENCODERS:
        raise ValueError(f"codec={codec!r} is not valid; choose one of {', '.join(ENCODERS)}")
    if len(frames) == 0:
        raise ValueError("no frames to encode")
    rate = Fraction(fps).limit_denominator(1001)
    first = frames[0]
    height, width = first.shape[:2] if isinstance(first, np.ndarray) else (first.height, first.width)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4", options={"fflags": "+bitexact"} if bitexact else None) as out:
        stream = out.add_stream(ENCODERS[codec], rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"  # mjpeg: full-range YUV
        if gop is not None:
            stream.codec_context.gop_size = gop
        stream.codec_context.options = dict(options or {})
        for i, frame in enumerate(frames):
            if isinstance(frame, np.ndarray):
                frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            frame.pts = i
            frame.time_base = 1 / rate
            frame.pict_type = 0
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()
