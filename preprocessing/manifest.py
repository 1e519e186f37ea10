"""The Parquet manifest (every input row, its status and where it went) and the dataset summary."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.media.shards import write_text_atomic

COLUMNS = pa.schema([
    ("source_id", pa.string()), ("label", pa.string()), ("label_index", pa.int32()),
    ("path", pa.string()), ("status", pa.string()), ("error", pa.string()), ("shard", pa.string()),
    ("key", pa.string()), ("nframes", pa.int32()), ("src_bytes", pa.int64()), ("bytes", pa.int64()),
    ("duration", pa.float64()),
    # sha256 of the video bytes as sharded ("" for rows that were not sharded): what
    # `vared2 verify` checks the shards against.
    ("sha256", pa.string()),
])


def write_manifest(path: str | Path, records: list[dict]) -> None:
    """Records sorted by source id, written atomically as Parquet."""
    records = sorted(records, key=lambda r: (r["source_id"], r["status"], r["path"]))
    table = pa.Table.from_pylist(records, schema=COLUMNS)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def read_manifest(path: str | Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def summarize(records: list[dict], shard_stats: list[dict], *, split: str, classes: list[str],
              settings: dict) -> dict:
    """Counts per status and per class x status, output bytes and video duration, shard list."""
    per_class: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        per_class[r["label"]][r["status"]] += 1
    ok = [r for r in records if r["status"] == "ok"]
    shards = [s for s in shard_stats if s["tar"]]
    return {
        "split": split,
        "num_rows": len(records),
        "num_ok": len(ok),
        "status": dict(sorted(Counter(r["status"] for r in records).items())),
        "classes": {name: dict(sorted(per_class[name].items())) for name in sorted(per_class)},
        "num_classes": len(classes),
        "num_shards": len(shards),
        "shards": [s["tar"] for s in shards],
        "bytes": sum(s["tar_bytes"] for s in shards),
        "src_bytes": sum(r["src_bytes"] for r in ok),
        "duration_s": round(sum(r["duration"] for r in ok), 3),
        "nframes": sum(r["nframes"] for r in ok),
        "settings": settings,
    }


def write_summary(path: str | Path, summary: dict) -> None:
    write_text_atomic(path, json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
