"""PyAV decoding of only the frames a clip needs, from the encoded bytes of one video.

Seek to the keyframe at or before the first needed frame, decode forward, convert to RGB only the
frames that are needed, and stop after the last one. Frame i of a constant-frame-rate video has
pts = start_pts + i / fps (in stream time base); shards are CFR by construction (DATA.md).
`decode_all` is the naive baseline (decode the whole video, then pick), kept for the benchmark.
"""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Sequence

import av
import numpy as np


class CorruptVideo(Exception):
    """The bytes do not decode to a usable video."""


def _open(data: bytes, threads: int):
    try:
        container = av.open(io.BytesIO(data), mode="r")
        stream = container.streams.video[0]
    except (av.FFmpegError, IndexError, ValueError) as exc:
        raise CorruptVideo(str(exc)) from exc
    # One thread per decode by default: loader workers parallelise across videos instead.
    stream.codec_context.thread_count = threads
    return container, stream


def _frame_rate(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise CorruptVideo("stream has no frame rate")
    return Fraction(rate)


def decode_frames(data: bytes, indices: Sequence[int], *, threads: int = 1,
                  short_side: int | None = None) -> np.ndarray:
    """uint8 (T, H, W, 3) RGB frames at `indices` (any order, repeats allowed).

    `short_side` resizes in the same swscale pass as the YUV -> RGB conversion (bilinear,
    aspect kept, sampling.resized_size rounding), far cheaper than resizing RGB frames afterwards.

    Indices past the last decodable frame repeat the last frame (the edge-padding rule of
    sampling.py), which also covers a container whose frame count was over-reported.
    """
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        raise ValueError("no frame indices requested")
    container, stream = _open(data, threads)
    try:
        fps = _frame_rate(stream)
        tb = stream.time_base
        start_pts = stream.start_time or 0
        size = None
        if short_side is not None:
            from pipeline.data.sampling import resized_size
            size = resized_size(stream.codec_context.height, stream.codec_context.width, short_side)
        frames = _decode_from_seek(container, stream, wanted, fps, tb, start_pts, size)
        if frames is None:  # the seek overshot (odd index): decode from the start instead
            container.seek(0, stream=stream, backward=True)
            frames = _decode_from_seek(container, stream, wanted, fps, tb, start_pts, size, False)
    except av.FFmpegError as exc:
        raise CorruptVideo(str(exc)) from exc
    finally:
        container.close()
    if not frames:
        raise CorruptVideo("no frame decoded")
    return np.stack([_nearest_before(frames, int(i)) for i in indices])


def _nearest_before(frames: dict[int, np.ndarray], index: int) -> np.ndarray:
    if index in frames:
        return frames[index]
    earlier = [k for k in frames if k <= index]
    return frames[max(earlier)] if earlier else frames[min(frames)]


def _decode_from_seek(container, stream, wanted, fps, tb, start_pts, size, seek=True):
    first, last = wanted[0], wanted[-1]
    wanted_set = set(wanted)
    if seek and first > 0:
        target = start_pts + int(round(first / fps / tb))
        container.seek(target, stream=stream, backward=True, any_frame=False)
    out: dict[int, np.ndarray] = {}
    count = -1
    for frame in container.decode(stream):
        if frame.pts is not None:
            index = int(round((frame.pts - start_pts) * tb * fps))
        else:  # no timestamps: count frames (only valid when decoding from the start)
            if seek and first > 0:
                return None
            count += 1
            index = count
        if not out and index > first:
            return None
        if index in wanted_set:
            if size is None or (frame.height, frame.width) == size:
                out[index] = frame.to_ndarray(format="rgb24")
            else:
                out[index] = frame.to_ndarray(format="rgb24", height=size[0], width=size[1],
                                              interpolation="BILINEAR")
        if index >= last:
            break
    return out


def decode_all(data: bytes, indices: Sequence[int], *, threads: int = 1) -> np.ndarray:
    """Naive baseline: decode and convert every frame of the video, then pick `indices`."""
    container, stream = _open(data, threads)
    try:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    finally:
        container.close()
    if not frames:
        raise CorruptVideo("no frame decoded")
    return np.stack([frames[min(i, len(frames) - 1)] for i in indices])


def probe_num_frames(data: bytes) -> int:
    """Frame count from the container header (fallback when a sample carries no `nframes`)."""
    container, stream = _open(data, 1)
    try:
        if stream.frames:
            return int(stream.frames)
        return sum(1 for _ in container.demux(stream) if _.size)
    finally:
        container.close()
