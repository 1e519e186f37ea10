"""WebDataset shard files: sample keys and members, deterministic tar headers, DALI `.idx` index,
atomic writes.

Tar headers are fixed (mtime 0, uid/gid 0, no user names, mode 0644, ustar), so a shard's bytes
depend only on its samples. Everything is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import tarfile
from pathlib import Path

# Field order inside a sample; WebDataset groups members by key, DALI picks them by extension.
FIELDS = ("cls", "json", "label", "mp4", "nframes")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_KEY = 80


def sample_key(source_id: str) -> str:
    """A dot-free, slash-free tar key for a source id (WebDataset and DALI cut at the first dot).

    Ids that are already safe and short are kept; others are sanitised and suffixed with a short
    hash of the original id, so two ids never share a key.
    """
    stem = source_id[:-4] if source_id.lower().endswith(".mp4") else source_id
    safe = _UNSAFE.sub("_", stem)
    if safe == stem and 0 < len(safe) <= MAX_KEY:
        return safe
    digest = hashlib.sha1(source_id.encode("utf-8")).hexdigest()[:10]
    return f"{safe[:MAX_KEY - 11]}_{digest}"


def int32(value: int) -> bytes:
    """Raw little-endian int32, for readers that cannot parse text (DALI `dtypes=INT32`)."""
    return struct.pack("<i", value)


def sample_members(key: str, *, label: int, video: bytes, meta: dict) -> list[tuple[str, bytes]]:
    """The (name, bytes) members of one sample, in `FIELDS` order."""
    fields = {
        "cls": str(label).encode("ascii"),
        "json": json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8"),
        "label": int32(label),
        "mp4": video,
        "nframes": int32(meta["nframes"]),
    }
    return [(f"{key}.{ext}", fields[ext]) for ext in FIELDS]


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


class TarWriter:
    """Stream members into `path` + `.tmp`; `close()` renames it into place and writes its `.idx`
    beside it, `abort()` removes it.

    `index` collects (name, data offset, size) per member for the `.idx` file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.idx = self.path.with_suffix(".idx")
        self._file = open(self.tmp, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)
        self.index: list[tuple[str, int, int]] = []

    def add(self, name: str, data: bytes) -> None:
        self._tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
        # The data ends, padded, at the current offset; it starts right after its 512-byte header.
        self.index.append((name, self._tar.offset - _padded(len(data)), len(data)))

    def close(self) -> None:
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.path)
        write_text_atomic(self.idx, idx_text(self.index))

    def abort(self) -> None:
        self._tar.close()
        self._file.close()
        self.tmp.unlink(missing_ok=True)


def _padded(size: int) -> int:
    return (size + 511) // 512 * 512


def idx_text(index: list[tuple[str, int, int]]) -> str:
    """DALI's `wds2idx` v1.2 format: `v1.2 N`, then per sample `ext offset size name` per member."""
    samples: list[list[str]] = []
    last = None
    for name, offset, size in index:
        base, ext = name.split(".", 1)
        if base != last:
            samples.append([])
            last = base
        samples[-1].append(f"{ext} {offset} {size} {name}")
    return f"v1.2 {len(samples)}\n" + "".join(" ".join(s) + "\n" for s in samples)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
