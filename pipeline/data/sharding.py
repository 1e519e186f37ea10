"""Where each sample lives in the shards, and which samples each rank reads in an epoch.

Samples are addressed through the DALI `.idx` files beside the shards (wds2idx format: a header
`v1.2 <num_samples>`, then per sample `ext offset size name ...` with data offsets), so a reader
can fetch one sample with a seek and a read. Shards without an `.idx` are indexed by one tar scan.

Per epoch, all N samples of the split are permuted with (seed, epoch) and cut into world_size
equal contiguous blocks: ranks are disjoint, and every rank gets the same number of samples, hence
the same number of batches. Training drops the N % world_size leftover samples (a different few
each epoch); evaluation pads the last rank's block with `None` entries that become invalid clips.
"""

from __future__ import annotations

import math
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SampleRef:
    shard: str  # path of the tar file
    key: str
    fields: dict[str, tuple[int, int]]  # extension -> (data offset, size)
    video_index: int  # position in the split, stable across epochs


def find_shards(root: str | Path, split: str) -> list[Path]:
    shards = sorted(Path(root).glob(f"{split}-[0-9][0-9][0-9][0-9][0-9][0-9].tar"))
    if not shards:
        raise ValueError(f"no shards named {split}-NNNNNN.tar under {root!r}")
    return shards


def _read_idx(idx: Path) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    lines = idx.read_text().splitlines()
    version, count = lines[0].split()
    if version != "v1.2":
        raise ValueError(f"{idx}: unsupported index version {version!r}")
    samples = []
    for line in lines[1:1 + int(count)]:
        parts = line.split()
        fields, key = {}, None
        for i in range(0, len(parts), 4):
            ext, offset, size, name = parts[i:i + 4]
            fields[ext] = (int(offset), int(size))
            key = name.split(".", 1)[0]
        samples.append((key, fields))
    return samples


@dataclass(frozen=True)
class TarScan:
    """One pass over a tar's headers: its whole regular members, and what stopped the pass early."""

    members: list[tuple[str, int, int]]  # (member name, data offset, size), in file order
    problem: str = ""  # "" when the tar reads to its end
    cut_member: str = ""  # the member whose data runs past the end of the file, if that stopped it


def scan_tar(path: Path) -> TarScan:
    """The members of a tar by one scan of its headers (used by `_scan_tar` and `vared2 verify`)."""
    members: list[tuple[str, int, int]] = []
    size = path.stat().st_size
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isreg():
                    continue
                if member.offset_data + member.size > size:
                    return TarScan(members, f"truncated: member {member.name} needs bytes up to "
                                            f"{member.offset_data + member.size}, the file has {size}",
                                   cut_member=member.name)
                members.append((member.name, member.offset_data, member.size))
    except (tarfile.TarError, OSError, EOFError) as err:
        return TarScan(members, f"unreadable tar after {len(members)} members: {err}")
    return TarScan(members)


def _scan_tar(path: Path) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """The samples of a shard without `.idx`, by one scan of its tar headers. A tar cut short
    (a copy or an upload that stopped) keeps its whole samples: the cut one and what followed it
    are skipped with a warning that says how many (from the shard's `.stats.json`, when present)."""
    scan = scan_tar(path)
    samples: list[tuple[str, dict[str, tuple[int, int]]]] = []
    for name, offset, size in scan.members:
        if "." not in name:
            continue
        key, ext = name.split(".", 1)
        if not samples or samples[-1][0] != key:
            samples.append((key, {}))
        samples[-1][1][ext] = (offset, size)
    if not scan.problem:
        return samples
    if scan.cut_member:
        if samples and samples[-1][0] == scan.cut_member.split(".", 1)[0]:
            samples.pop()  # the cut sample is not whole
    elif not samples:
        raise ValueError(f"{path}: the shard has no .idx and its tar cannot be read ({scan.problem}); "
                         f"`vared2 verify {path.parent}` lists what is damaged")
    elif set(samples[-1][1]) != set(samples[0][1]):
        samples.pop()  # the tar broke inside the last sample: not all its members were read
    import json
    import warnings

    stats = path.with_name(path.name[:-len(".tar")] + ".stats.json")
    try:
        expected = f" of {json.loads(stats.read_text())['num_samples']}"
    except (OSError, ValueError, KeyError):
        expected = ""
    warnings.warn(f"{path}: the tar is cut short ({scan.problem}); its {len(samples)}{expected} whole "
                  f"samples are read and the rest skipped; `vared2 verify {path.parent}` lists "
                  "what is damaged", stacklevel=2)
    return samples


def index_split(root: str | Path, split: str) -> list[SampleRef]:
    """Every sample of a split, in shard order."""
    refs: list[SampleRef] = []
    for shard in find_shards(root, split):
        idx = shard.with_suffix(".idx")
        entries = _read_idx(idx) if idx.exists() else _scan_tar(shard)
        for key, fields in entries:
            refs.append(SampleRef(str(shard), key, fields, len(refs)))
    return refs


def read_fields(ref: SampleRef, exts: tuple[str, ...]) -> dict[str, bytes]:
    out = {}
    with open(ref.shard, "rb") as f:
        for ext in exts:
            if ext in ref.fields:
                offset, size = ref.fields[ext]
                f.seek(offset)
                out[ext] = f.read(size)
    return out


def rank_items(num_samples: int, *, rank: int, world_size: int, seed: int, epoch: int,
               shuffle: bool, pad: bool) -> list[int | None]:
    """The sample positions rank `rank` reads this epoch (None = padding, only when `pad`)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
    order = (np.random.default_rng([seed, epoch, 0x5EED]).permutation(num_samples) if shuffle
             else np.arange(num_samples))
    per_rank = math.ceil(num_samples / world_size) if pad else num_samples // world_size
    block = order[rank * per_rank:(rank + 1) * per_rank].tolist()
    return block + [None] * (per_rank - len(block))


def batch_slices(num_items: int, batch_size: int, drop_last: bool) -> list[slice]:
    count = num_items // batch_size if drop_last else math.ceil(num_items / batch_size)
    return [slice(b * batch_size, min((b + 1) * batch_size, num_items)) for b in range(count)]
