"""One video in, one training-ready MP4 out (PyAV): short side resized, constant frame rate, no audio.

Output is deterministic: one encoder thread, fixed encoder options and `+bitexact` muxing, so the
same input and settings give the same bytes on every worker. Every output is decoded again to check
it and to count its frames. Failures raise `VideoError` carrying the manifest status.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from fractions import Fraction

import av

from pipeline.media.encode import ENCODERS, X264_DETERMINISTIC, encode_mp4

CODECS = (*ENCODERS, "copy")


class VideoError(Exception):
    """A video that cannot be used; `status` goes into the manifest (`corrupt`, `too_short`)."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TranscodeSettings:
    codec: str = "h264"
    short_side: int = 128
    fps: float = 15.0
    keyframe_interval: int = 8
    crf: int = 23
    preset: str = "veryfast"  # x264 speed preset; vp9 uses realtime/cpu-used=8, mjpeg its quality
    min_frames: int = 16

    def __post_init__(self):
        if self.codec not in CODECS:
            raise ValueError(f"codec={self.codec!r} is not valid; choose one of {', '.join(CODECS)}")


@dataclass(frozen=True)
class VideoInfo:
    """What the shard's `json` records about a source and its output."""

    src_fps: float
    src_width: int
    src_height: int
    src_duration: float
    src_sha256: str
    codec: str
    width: int
    height: int
    fps: float
    nframes: int


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side at `short_side`, both even (yuv420p needs it)."""
    if width <= height:
        w, h = short_side, round(height * short_side / width)
    else:
        w, h = round(width * short_side / height), short_side
    return max(2, w - w % 2), max(2, h - h % 2)


def encoder_options(s: TranscodeSettings) -> dict[str, str]:
    """Encoder options, shared with the benchmark's plain PyAV loop so both pay the same encode."""
    k = s.keyframe_interval
    # h264: deterministic, and its lack of B-frames also means no edit lists, exact frame counts
    # and cheap seeking.
    if s.codec == "h264":
        return {"threads": "1", "preset": s.preset, "crf": str(s.crf), "tune": "fastdecode",
                "x264-params": f"{X264_DETERMINISTIC}:keyint={k}:min-keyint={k}:scenecut=0"}
    if s.codec == "vp9":
        return {"threads": "1", "row-mt": "0", "crf": str(s.crf), "b": "0", "deadline": "realtime",
                "cpu-used": "8", "lag-in-frames": "0", "keyint_min": str(k)}
    return {"threads": "1", "qmin": "2", "qmax": str(max(2, min(31, s.crf // 2)))}


def _probe(container) -> tuple[object, float, float]:
    if not container.streams.video:
        raise VideoError("corrupt", "no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or Fraction(30)
    duration = 0.0
    if stream.duration is not None and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    return stream, float(rate), duration


def _resampled_frames(container, stream, fps: float, short_side: int):
    """Decode and yield (frame, out_index) at constant `fps`, nearest earlier source frame per tick.

    A source frame covers [t_k, t_{k+1}); every output tick i/fps inside it repeats that frame, so
    frame rate changes drop or repeat frames instead of blending them.
    """
    stream.thread_type = "NONE"
    stream.codec_context.thread_count = 1
    out_i, prev, start, size = 0, None, None, None
    step = 1.0 / fps
    resized = None  # `prev` resized, made only when a tick needs it (dropped frames cost nothing)

    def emit():
        nonlocal resized
        if resized is None:
            resized = prev.reformat(width=size[0], height=size[1], format="yuv420p",
                                    interpolation="BILINEAR")
        return resized

    for frame in container.decode(stream):
        if frame.pts is None or frame.time is None:
            continue
        if start is None:
            start = frame.time
            size = output_size(frame.width, frame.height, short_side)
        t = frame.time - start
        while prev is not None and out_i * step < t - 1e-6:
            yield emit(), out_i
            out_i += 1
        prev, resized, last_t = frame, None, t
    if prev is None:
        raise VideoError("corrupt", "no decodable video frames")
    rate = float(stream.average_rate or fps)
    end = last_t + 1.0 / rate
    while out_i * step < end - 1e-6:
        yield emit(), out_i
        out_i += 1


def _remux(data: bytes) -> bytes:
    """`copy`: the video stream into MP4 without re-encoding (audio dropped)."""
    buf = io.BytesIO()
    with av.open(io.BytesIO(data)) as src, \
            av.open(buf, "w", format="mp4", options={"fflags": "+bitexact"}) as out:
        in_stream = src.streams.video[0]
        stream = out.add_stream_from_template(in_stream)
        for packet in src.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    return buf.getvalue()


def inspect(data: bytes) -> tuple[int, int, int, str]:
    """(nframes, width, height, codec) of an encoded video, by decoding every frame."""
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.video[0]
        stream.codec_context.thread_count = 1
        n = 0
        for frame in c.decode(stream):
            n += 1
            w, h = frame.width, frame.height
        if n == 0:
            raise VideoError("corrupt", "output has no frames")
        return n, w, h, stream.codec_context.name


def transcode(data: bytes, s: TranscodeSettings) -> tuple[bytes, VideoInfo]:
    """Transcode the bytes of one source video; raise `VideoError` when it cannot be used."""
    if not data:
        raise VideoError("corrupt", "empty file (0 bytes)")
    sha = hashlib.sha256(data).hexdigest()
    try:
        with av.open(io.BytesIO(data)) as src:
            stream, src_fps, duration = _probe(src)
            src_w, src_h = stream.codec_context.width, stream.codec_context.height
            if s.codec == "copy":
                frames = None
            else:
                frames = [f for f, _ in _resampled_frames(src, stream, s.fps, s.short_side)]
                if len(frames) < s.min_frames:
                    raise VideoError("too_short", f"{len(frames)} frames at {s.fps:g} fps, "
                                                  f"fewer than min_frames={s.min_frames}")
        if frames is None:
            payload = _remux(data)
        else:
            payload = encode_mp4(frames, fps=s.fps, codec=s.codec, options=encoder_options(s),
                                 gop=s.keyframe_interval, bitexact=True)
        nframes, width, height, codec = inspect(payload)
    except VideoError:
        raise
    except (av.error.FFmpegError, ValueError, IndexError, OSError, EOFError) as err:
        raise VideoError("corrupt", f"{type(err).__name__}: {err}") from None
    if frames is not None and nframes != len(frames):
        raise VideoError("corrupt", f"output decodes to {nframes} frames, {len(frames)} were encoded")
    if nframes < s.min_frames:
        raise VideoError("too_short", f"{nframes} frames, fewer than min_frames={s.min_frames}")
    fps = s.fps if frames is not None else src_fps
    return payload, VideoInfo(src_fps=round(src_fps, 4), src_width=src_w, src_height=src_h,
                              src_duration=round(duration, 4), src_sha256=sha, codec=codec,
                              width=width, height=height, fps=fps, nframes=nframes)
