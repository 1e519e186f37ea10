"""Are a split's shards what preprocessing wrote? `vared2 verify`, and the DALI loader's check
before it builds a pipeline.

Preprocessing leaves, per split, the shards `{split}-NNNNNN.tar`, their DALI `.idx` files, a
`{split}-summary.json` listing the shards and a `{split}-manifest.parquet` with, per sharded video,
its shard, key, size and sha256. Against those, per shard:

- the tar reads to its end: every member's header parses and its data lies inside the file (a shard
  truncated mid-member, or cut on shared storage, fails here);
- the `.idx` exists and lists exactly the tar's members at their offsets and sizes (a missing `.idx`
  makes DALI index the tar itself or fail; a stale one makes it read the wrong bytes);
- every video the manifest puts in the shard is there, with its size and, with `hashes=True`, its
  sha256 (a bit flip inside a video's bytes changes nothing else);
- shards the summary lists are present, and no shard is there that it does not list.

The structural checks read the tar headers only; hashing reads every video once, so the DALI loader,
which runs on every start, does the structural ones and `vared2 verify` all of them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.sharding import _read_idx, scan_tar

SHARD_NAME = re.compile(r"^(?P<split>.+)-(?P<index>\d{6})\.tar$")


@dataclass(frozen=True)
class Damage:
    """One thing wrong with a split's shards; `key` / `source_id` name the video when it is one."""

    shard: str
    problem: str
    key: str = ""
    source_id: str = ""

    def __str__(self) -> str:
        who = f" {self.key}" + (f" ({self.source_id})" if self.source_id and self.source_id != self.key else "")
        return f"{self.shard}:{who if self.key else ''} {self.problem}"


@dataclass(frozen=True)
class VerifyReport:
    split: str
    num_shards: int
    num_videos: int  # videos the manifest puts in the shards (0 without a manifest)
    hashed: int  # videos whose sha256 was checked
    damage: tuple[Damage, ...]

    @property
    def ok(self) -> bool:
        return not self.damage


def _idx_members(idx: Path) -> list[tuple[str, int, int]]:
    return sorted((f"{key}.{ext}", offset, size) for key, fields in _read_idx(idx)
                  for ext, (offset, size) in fields.items())


def _manifest(root: Path, split: str) -> dict[str, list[dict]]:
    """Sharded manifest rows per shard file name ({} without a manifest)."""
    path = root / f"{split}-manifest.parquet"
    if not path.exists():
        return {}
    import pyarrow.parquet as pq

    rows: dict[str, list[dict]] = {}
    for row in pq.read_table(path).to_pylist():
        if row.get("status") == "ok" and row.get("shard"):
            rows.setdefault(row["shard"], []).append(row)
    return rows


def verify_split(root: str | Path, split: str, *, hashes: bool = True) -> VerifyReport:
    """Check the shards of `split` under `root` (see the module docstring)."""
    root = Path(root)
    present = sorted(p.name for p in root.glob(f"{split}-[0-9][0-9][0-9][0-9][0-9][0-9].tar"))
    damage: list[Damage] = []
    summary_path = root / f"{split}-summary.json"
    listed = None
    if summary_path.exists():
        try:
            listed = list(json.loads(summary_path.read_text(encoding="utf-8")).get("shards", []))
        except ValueError as err:
            damage.append(Damage(summary_path.name, f"unreadable summary: {err}"))
    if not present and not listed:
        raise ValueError(f"no shards named {split}-NNNNNN.tar under {str(root)!r}")
    if listed is not None:
        damage += [Damage(name, "listed in the summary but missing") for name in listed if name not in present]
        damage += [Damage(name, "not listed in the summary (left by another run?)")
                   for name in present if name not in listed]
    manifest = _manifest(root, split)
    num_videos = hashed = 0
    for name in present:
        path = root / name
        scan = scan_tar(path)
        members, error = scan.members, scan.problem
        if error:
            damage.append(Damage(name, error))
        idx = path.with_suffix(".idx")
        if not idx.exists():
            damage.append(Damage(name, "missing .idx (DALI needs it; rerun `vared2 preprocess` to rewrite it)"))
        elif not error:
            try:
                if _idx_members(idx) != sorted(members):
                    damage.append(Damage(name, ".idx does not match the tar's members (stale or damaged)"))
            except (ValueError, IndexError) as err:
                damage.append(Damage(name, f"unreadable .idx: {err}"))
        by_name = {m[0]: m for m in members}
        rows = manifest.get(name, [])
        num_videos += len(rows)
        if not rows:
            continue
        with open(path, "rb") as f:
            for row in rows:
                member = by_name.get(f"{row['key']}.mp4")
                where = dict(key=row["key"], source_id=row.get("source_id") or "")
                if member is None:
                    if not error:  # a truncated shard already says why
                        damage.append(Damage(name, "video missing from the shard", **where))
                    continue
                _, offset, size = member
                if row.get("bytes") and size != row["bytes"]:
                    damage.append(Damage(name, f"video is {size} bytes, the manifest says {row['bytes']}", **where))
                    continue
                if hashes and row.get("sha256"):
                    f.seek(offset)
                    hashed += 1
                    if hashlib.sha256(f.read(size)).hexdigest() != row["sha256"]:
                        damage.append(Damage(name, "video bytes differ from the manifest's sha256 "
                                                   "(damaged on disk or in transfer)", **where))
    return VerifyReport(split=split, num_shards=len(present), num_videos=num_videos, hashed=hashed,
                        damage=tuple(damage))


def require_intact(root: str | Path, split: str) -> None:
    """Raise ValueError listing what is damaged when the split's shards fail the structural checks
    (for loaders that would otherwise die mid-epoch, such as DALI)."""
    report = verify_split(root, split, hashes=False)
    if not report.ok:
        lines = "\n  ".join(str(d) for d in report.damage)
        raise ValueError(f"the {split} shards under {str(root)!r} are damaged:\n  {lines}\n"
                         f"(`vared2 verify {root}` checks them all; rerun `vared2 preprocess` to rewrite them)")
