"""Splitting annotation rows into deterministic shard tasks, before any video is opened.

Rows are ordered by a hash of their source id (independent of CSV order, and mixing classes across
shards even when ids are grouped by class, as Moments paths are), then cut into shards by sample
count and source bytes. The plan depends only on the inputs and settings, never on worker count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass

import av

from pipeline.media.shards import sample_key
from preprocessing.annotations import VideoRow
from preprocessing.transcode import TranscodeSettings


@dataclass(frozen=True)
class PlannedRow:
    source_id: str
    key: str
    label: str
    label_index: int
    path: str
    src_bytes: int


@dataclass(frozen=True)
class ShardTask:
    """One shard: `{split}-{index:06d}.tar` holding these rows (those that transcode)."""

    output: str
    split: str
    index: int
    settings: TranscodeSettings
    rows: tuple[PlannedRow, ...]

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:06d}"

    def fingerprint(self) -> str:
        """Hash of everything that determines the shard's bytes; resume markers must match it.

        Paths are left out (a dataset may move); ids, labels and source sizes are in, and so are the
        PyAV / FFmpeg versions, whose encoders may produce other bytes.
        """
        payload = {
            "settings": dataclasses.asdict(self.settings),
            "rows": [[r.source_id, r.key, r.label, r.label_index, r.src_bytes] for r in self.rows],
            "av": av.__version__,
            "libavcodec": list(av.library_versions.get("libavcodec", ())),
        }
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _order(source_id: str) -> tuple[str, str]:
    return hashlib.sha1(source_id.encode("utf-8")).hexdigest(), source_id


def plan_shards(rows: list[VideoRow], classes: list[str], *, output: str, split: str,
                settings: TranscodeSettings, max_samples: int, max_bytes: int
                ) -> tuple[list[ShardTask], list[dict]]:
    """(shard tasks, manifest records of rows that never reach a shard).

    Rows that never reach a shard: `missing` (no file), `duplicate` (same source id again),
    `unknown_label` (label not in the class list).
    """
    class_index = {name: i for i, name in enumerate(classes)}
    ordered = sorted(rows, key=lambda r: (_order(r.source_id), r.label, r.path or ""))
    seen_ids: set[str] = set()
    seen_keys: set[str] = set()
    skipped: list[dict] = []
    planned: list[PlannedRow] = []
    for row in ordered:
        key = sample_key(row.source_id)
        status, error = None, ""
        if row.source_id in seen_ids or key in seen_keys:
            status, error = "duplicate", "source id already listed"
        seen_ids.add(row.source_id)
        seen_keys.add(key)
        if status is not None:
            pass
        elif row.label not in class_index:
            status, error = "unknown_label", f"label {row.label!r} is not in the class list"
        elif row.path is None or not os.path.isfile(row.path):
            status, error = "missing", "video file not found"
        if status is not None:
            skipped.append(record(row.source_id, row.label, class_index.get(row.label, -1),
                                  row.path or "", status, error, key=key if status != "duplicate" else ""))
            continue
        planned.append(PlannedRow(row.source_id, key, row.label, class_index[row.label], row.path,
                                  os.path.getsize(row.path)))
    tasks: list[ShardTask] = []
    current: list[PlannedRow] = []
    current_bytes = 0
    for row in planned:
        if current and (len(current) >= max_samples or current_bytes + row.src_bytes > max_bytes):
            tasks.append(ShardTask(output, split, len(tasks), settings, tuple(current)))
            current, current_bytes = [], 0
        current.append(row)
        current_bytes += row.src_bytes
    if current:
        tasks.append(ShardTask(output, split, len(tasks), settings, tuple(current)))
    return tasks, skipped


def record(source_id: str, label: str, label_index: int, path: str, status: str, error: str = "",
           *, shard: str = "", key: str = "", nframes: int = 0, src_bytes: int = 0, bytes_: int = 0,
           duration: float = 0.0, sha256: str = "") -> dict:
    """One manifest row (the columns of `manifest.COLUMNS`); `sha256` is the sharded video's."""
    return {"source_id": source_id, "label": label, "label_index": label_index, "path": path,
            "status": status, "error": error, "shard": shard, "key": key, "nframes": nframes,
            "src_bytes": src_bytes, "bytes": bytes_, "duration": duration,
            "sha256": sha256}
