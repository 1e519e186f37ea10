"""PyAV decoding of only the frames a clip needs, from the encoded bytes of one video.

Seek to the keyframe at or before the first needed frame, decode forward, keep only the frames
that are needed, and stop after the last one (`decode_video_frames`). `decode_frame_list` converts
them to RGB at native size; the loaders instead take the Y, U, V planes of 8-bit 4:2:0 frames
(`yuv420_planes`) and convert only the pixels of the crop, after resampling (transform.py).
Frame i of a constant-frame-rate video has pts = start_pts + i / fps (in stream time base); shards
are CFR by construction (DATA.md).
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


def decode_frames(data: bytes, indices: Sequence[int], *, threads: int = 1) -> np.ndarray:
    """uint8 (T, H, W, 3) RGB frames at `indices` (any order, repeats allowed)."""
    return np.stack(decode_frame_list(data, indices, threads=threads))


def decode_frame_list(data: bytes, indices: Sequence[int], *, threads: int = 1) -> list[np.ndarray]:
    """uint8 (H, W, 3) RGB frames at `indices`, at native size (swscale's unscaled conversion, the
    cheap one; callers resample only the part they keep). A repeated index repeats the same array.

    Indices past the last decodable frame repeat the last frame (the edge-padding rule of
    sampling.py), which also covers a container whose frame count was over-reported.
    """
    return frames_to_rgb(decode_video_frames(data, indices, threads=threads))


def frames_to_rgb(frames: Sequence) -> list[np.ndarray]:
    """uint8 (H, W, 3) RGB of decoded frames at native size, each distinct frame converted once."""
    # threads=1: swscale's default (auto) builds a thread pool for every frame it converts,
    # which doubled the cost of a clip on 2 cores; loader workers parallelise instead
    rgb = {id(f): f.to_ndarray(format="rgb24", threads=1) for f in frames}
    return [rgb[id(f)] for f in frames]


def decode_video_frames(data: bytes, indices: Sequence[int], *, threads: int = 1) -> list:
    """The decoded `av.VideoFrame`s at `indices`, not converted (see decode_frame_list for the
    rules; a repeated index repeats the same frame object)."""
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        raise ValueError("no frame indices requested")
    container, stream = _open(data, threads)
    try:
        fps = _frame_rate(stream)
        tb = stream.time_base
        start_pts = stream.start_time or 0
        frames = _decode_from_seek(container, stream, wanted, fps, tb, start_pts)
        if frames is None:  # the seek overshot (odd index): decode from the start instead
            container.seek(0, stream=stream, backward=True)
            frames = _decode_from_seek(container, stream, wanted, fps, tb, start_pts, False)
    except av.FFmpegError as exc:
        raise CorruptVideo(str(exc)) from exc
    finally:
        container.close()
    if not frames:
        raise CorruptVideo("no frame decoded")
    return [_nearest_before(frames, int(i)) for i in indices]


# 8-bit 4:2:0 frames whose colours swscale converts as limited-range BT.601: AVColorSpace
# unspecified (2) or BT.601 (bt470bg 5, smpte170m 6), AVColorRange anything but full (jpeg, 2)
_BT601 = (2, 5, 6)


def yuv420_planes(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Views (no copy) of the Y, U, V planes of an 8-bit 4:2:0 limited-range BT.601 frame, the
    format of every shard written by preprocessing; None for any other format (convert to RGB)."""
    if frame.format.name != "yuv420p" or frame.color_range == 2 or frame.colorspace not in _BT601:
        return None
    return tuple(np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]
                 for plane in frame.planes)


def _nearest_before(frames: dict, index: int):
    if index in frames:
        return frames[index]
    earlier = [k for k in frames if k <= index]
    return frames[max(earlier)] if earlier else frames[min(frames)]


def _decode_from_seek(container, stream, wanted, fps, tb, start_pts, seek=True):
    first, last = wanted[0], wanted[-1]
    wanted_set = set(wanted)
    if seek and first > 0:
        target = start_pts + int(round(first / fps / tb))
        container.seek(target, stream=stream, backward=True, any_frame=False)
    out: dict[int, av.VideoFrame] = {}
    count = -1
    # index = round((pts - start_pts) * tb * fps) in integers (Fraction arithmetic per frame
    # cost ~0.3 ms per clip): num / den, rounded half to even like round(Fraction)
    rate = Fraction(tb) * fps
    num, den = rate.numerator, rate.denominator
    for frame in container.decode(stream):
        if frame.pts is not None:
            index, rest = divmod((frame.pts - start_pts) * num, den)
            if 2 * rest > den or (2 * rest == den and index % 2):
                index += 1
        else:  # no timestamps: count frames (only valid when decoding from the start)
            if seek and first > 0:
                return None
            count += 1
            index = count
        if not out and index > first:
            return None
        if index in wanted_set:
            out[index] = frame
        if index >= last:
            break
    return out


def decode_all(data: bytes, indices: Sequence[int], *, threads: int = 1) -> np.ndarray:
    """Naive baseline: decode and convert every frame of the video, then pick `indices`."""
    container, stream = _open(data, threads)
    try:
        frames = [f.to_ndarray(format="rgb24", threads=1) for f in container.decode(stream)]
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
