"""Numba kernels of the CPU loaders: colour conversion and normalisation, one pass over the pixels
each, compiled on first use (and cached on disk).

Every kernel runs over flat, contiguous pixel arrays so LLVM vectorises it, and computes a
normalised value the same way, `float32(rgb) * scale + shift` with `rgb` a whole number in 0..255
and no fused multiply-add, so a clip normalised from uint8 RGB and the same clip normalised
straight from its YUV planes are bit-identical.

YUV -> RGB is ITU-R BT.601 with limited range (Y 16..235, U/V 16..240), swscale's conversion for
8-bit 4:2:0 frames that are tagged BT.601 or not tagged at all; results are rounded to whole
numbers and clipped to 0..255 like swscale's, which they match within a grey level or two (its
fixed-point arithmetic rounds differently).
"""

from __future__ import annotations

import numba
import numpy as np

# no "contract": a * b + c stays a multiply then an add (no FMA), identical in every kernel
_FLAGS = {"nnan", "ninf", "nsz", "arcp", "afn", "reassoc"}

_KY, _RV, _GU, _GV, _BU = 1.164383, 1.596027, 0.391762, 0.812968, 2.017232


@numba.njit(nogil=True, cache=True, fastmath=_FLAGS)
def _rgb(y, u, v):
    """Whole-number RGB (as float32) of one limited-range BT.601 pixel."""
    yf = (np.float32(y) - np.float32(16.0)) * np.float32(_KY)
    uf = np.float32(u) - np.float32(128.0)
    vf = np.float32(v) - np.float32(128.0)
    r = np.floor(yf + np.float32(_RV) * vf + np.float32(0.5))
    g = np.floor(yf - np.float32(_GU) * uf - np.float32(_GV) * vf + np.float32(0.5))
    b = np.floor(yf + np.float32(_BU) * uf + np.float32(0.5))
    lo, hi = np.float32(0.0), np.float32(255.0)
    return min(max(r, lo), hi), min(max(g, lo), hi), min(max(b, lo), hi)


@numba.njit(nogil=True, cache=True, fastmath=_FLAGS)
def yuv_normalise(y, u, v, out, scale, shift):
    """Y, U, V uint8 (N,) at full resolution -> out float32 (3, N), normalised RGB."""
    s0, s1, s2 = scale[0], scale[1], scale[2]
    h0, h1, h2 = shift[0], shift[1], shift[2]
    for k in range(y.shape[0]):
        r, g, b = _rgb(y[k], u[k], v[k])
        out[0, k] = r * s0 + h0
        out[1, k] = g * s1 + h1
        out[2, k] = b * s2 + h2


@numba.njit(nogil=True, cache=True, fastmath=_FLAGS)
def yuv_to_rgb(y, u, v, out):
    """Y, U, V uint8 (N,) at full resolution -> out uint8 (N, 3), interleaved RGB."""
    for k in range(y.shape[0]):
        r, g, b = _rgb(y[k], u[k], v[k])
        out[k, 0] = np.uint8(r)
        out[k, 1] = np.uint8(g)
        out[k, 2] = np.uint8(b)


@numba.njit(nogil=True, cache=True, fastmath=_FLAGS)
def rgb_normalise(rgb, out, scale, shift):
    """Interleaved uint8 RGB (N, 3) -> out float32 (3, N), normalised (the channel split included)."""
    s0, s1, s2 = scale[0], scale[1], scale[2]
    h0, h1, h2 = shift[0], shift[1], shift[2]
    for k in range(rgb.shape[0]):
        out[0, k] = np.float32(rgb[k, 0]) * s0 + h0
        out[1, k] = np.float32(rgb[k, 1]) * s1 + h1
        out[2, k] = np.float32(rgb[k, 2]) * s2 + h2


@numba.njit(nogil=True, cache=True, fastmath=_FLAGS)
def planar_normalise(planes, out, scale, shift):
    """Planar uint8 (3, N) -> out float32 (3, N), normalised."""
    for c in range(3):
        s, h = scale[c], shift[c]
        for k in range(planes.shape[1]):
            out[c, k] = np.float32(planes[c, k]) * s + h
