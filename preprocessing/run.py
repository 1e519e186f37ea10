"""The preprocessing driver: annotations -> class list -> shard plan -> shards -> manifest + summary.

`prepare` and `finalize` run once on the driver; `run_shard` is the unit of work (pure function of
its `ShardTask`, writing one shard, its `.idx` and its `.stats.json` resume marker), which
`preprocess` runs in this process and `jobs/preprocess.py` runs as Ray tasks.

Files written under `output/`:
    classes.txt                      class names, one per line, line number = label index
    {split}-{index:06d}.tar / .idx   the shards and their DALI indices
    {split}-{index:06d}.stats.json   per-shard results, the resume marker (written last)
    {split}-manifest.parquet         every input row: status, error, shard, key, ...
    {split}-summary.json             counts per status and class, bytes, duration, shard list
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from pipeline.media.shards import TarWriter, sample_members, write_text_atomic
from preprocessing.annotations import (CLASS_LIST, read_annotations, read_class_index,
                                       read_class_list, write_class_list)
from preprocessing.manifest import summarize, write_manifest, write_summary
from preprocessing.plan import ShardTask, plan_shards, record
from preprocessing.transcode import TranscodeSettings, VideoError, transcode


@dataclass(frozen=True)
class Prepared:
    tasks: list[ShardTask]
    skipped: list[dict]  # manifest records of rows that reach no shard (missing, duplicate, ...)
    classes: list[str]


def settings_from_config(cfg) -> TranscodeSettings:
    """The transcode part of a `PreprocessConfig`."""
    return TranscodeSettings(codec=cfg.codec, short_side=cfg.short_side, fps=cfg.fps,
                             keyframe_interval=cfg.keyframe_interval, crf=cfg.crf,
                             preset=cfg.x264_preset, min_frames=cfg.min_frames)


def resolve_classes(cfg, reader_classes: list[str], labels: set[str]) -> list[str]:
    """The class list: an explicit index file, else the one already beside the shards, else the
    reader's; written to `output/classes.txt` so every split of a dataset shares one order."""
    written = Path(cfg.output) / CLASS_LIST
    existing = read_class_list(written) if written.is_file() else None
    if cfg.class_index:
        classes = read_class_index(cfg.class_index)
    elif existing is not None:
        classes = existing
        unknown = sorted(labels - set(classes))
        if unknown:
            raise ValueError(f"{written} (from an earlier run) lacks labels {unknown[:5]}"
                             f"{' ...' if len(unknown) > 5 else ''}; use another output folder")
    else:
        classes = reader_classes
    if existing is not None and existing != classes:
        raise ValueError(f"{written} (from an earlier run) differs from the class list of this run; "
                         f"use another output folder")
    if existing is None:
        write_class_list(written, classes)
    return classes


def prepare(cfg) -> Prepared:
    """Read the annotations, fix the class list and plan the shards (a `PreprocessConfig`)."""
    if not cfg.annotations or not os.path.exists(cfg.annotations):
        raise ValueError(f"preprocess.annotations={cfg.annotations!r}: give an existing annotation "
                         f"CSV (or Moments in Time folder)")
    if cfg.format != "csv" and not cfg.videos:
        raise ValueError("preprocess.videos is empty; give the folder holding the video files")
    rows, reader_classes = read_annotations(cfg.format, cfg.annotations, cfg.videos, cfg.split,
                                            subset=cfg.subset)
    if not rows:
        raise ValueError(f"{cfg.annotations}: no rows for split {cfg.split!r}")
    Path(cfg.output).mkdir(parents=True, exist_ok=True)
    classes = resolve_classes(cfg, reader_classes, {r.label for r in rows})
    tasks, skipped = plan_shards(rows, classes, output=str(cfg.output), split=cfg.split,
                                 settings=settings_from_config(cfg),
                                 max_samples=cfg.max_shard_samples, max_bytes=cfg.max_shard_bytes)
    return Prepared(tasks, skipped, classes)


def _paths(task: ShardTask) -> dict[str, Path]:
    base = Path(task.output) / task.name
    return {ext: base.with_name(f"{task.name}.{ext}") for ext in ("tar", "idx", "stats.json")}


def finished_stats(task: ShardTask) -> dict | None:
    """The shard's stats if its marker exists and is consistent (same fingerprint, files present
    with the recorded sizes), else None: the shard must be (re)made."""
    paths = _paths(task)
    try:
        stats = json.loads(paths["stats.json"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if stats.get("fingerprint") != task.fingerprint():
        return None
    if not stats["tar"] and paths["tar"].exists():  # an empty shard leaves no tar behind
        return None
    if stats["tar"]:
        for ext, size_key in (("tar", "tar_bytes"), ("idx", "idx_bytes")):
            if not paths[ext].is_file() or paths[ext].stat().st_size != stats[size_key]:
                return None
    return stats


def run_shard(task: ShardTask) -> dict:
    """Transcode the task's videos into its shard; returns (and writes) its stats.

    A failure of one video is recorded and the shard carries on; only the writing of the shard
    itself can raise.
    """
    paths = _paths(task)
    for path in paths.values():  # whatever an interrupted or older run left
        path.with_name(path.name + ".tmp").unlink(missing_ok=True)
    paths["stats.json"].unlink(missing_ok=True)
    writer = TarWriter(paths["tar"])
    results, num_ok = [], 0
    try:
        for row in task.rows:
            base = dict(shard="", key=row.key, src_bytes=row.src_bytes)
            try:
                with open(row.path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                results.append(record(row.source_id, row.label, row.label_index, row.path, "missing",
                                      "video file disappeared after planning", **base))
                continue
            except OSError as err:
                results.append(record(row.source_id, row.label, row.label_index, row.path,
                                      "unreadable", f"{type(err).__name__}: {err}", **base))
                continue
            try:
                video, info = transcode(data, task.settings)
            except VideoError as err:
                results.append(record(row.source_id, row.label, row.label_index, row.path,
                                      err.status, str(err), **base))
                continue
            meta = {"source_id": row.source_id, "label": row.label_index, "label_name": row.label,
                    **dataclasses.asdict(info)}
            for name, payload in sample_members(row.key, label=row.label_index, video=video, meta=meta):
                writer.add(name, payload)
            num_ok += 1
            results.append(record(row.source_id, row.label, row.label_index, row.path, "ok",
                                  shard=f"{task.name}.tar", key=row.key, nframes=info.nframes,
                                  src_bytes=row.src_bytes, bytes_=len(video),
                                  duration=round(info.nframes / info.fps, 4),
                                  sha256=hashlib.sha256(video).hexdigest()))
    except BaseException:
        writer.abort()
        raise
    if num_ok:
        writer.close()  # the tar, then its .idx
    else:  # DALI and wds2idx reject empty tars: a shard whose videos all failed is not written
        writer.abort()
        paths["tar"].unlink(missing_ok=True)
        paths["idx"].unlink(missing_ok=True)
    stats = {
        "shard": task.name, "fingerprint": task.fingerprint(), "num_rows": len(task.rows),
        "num_samples": num_ok, "tar": f"{task.name}.tar" if num_ok else "",
        "tar_bytes": paths["tar"].stat().st_size if num_ok else 0,
        "idx_bytes": paths["idx"].stat().st_size if num_ok else 0,
        "rows": results,
    }
    write_text_atomic(paths["stats.json"], json.dumps(stats, indent=1, sort_keys=True,
                                                      ensure_ascii=False) + "\n")
    return stats


def finalize(cfg, prepared: Prepared, stats: Iterable[dict]) -> dict:
    """Write the manifest and the summary from the skipped rows and every shard's stats."""
    stats = sorted(stats, key=lambda s: s["shard"])
    records = list(prepared.skipped) + [r for s in stats for r in s["rows"]]
    out = Path(cfg.output)
    write_manifest(out / f"{cfg.split}-manifest.parquet", records)
    summary = summarize(records, stats, split=cfg.split, classes=prepared.classes,
                        settings=dataclasses.asdict(settings_from_config(cfg)))
    write_summary(out / f"{cfg.split}-summary.json", summary)
    return summary


def preprocess(cfg, *, progress: Callable[[dict], None] | None = None,
               max_shards: int | None = None) -> dict:
    """Run everything in this process; `max_shards` stops early (to simulate an interruption)."""
    prepared = prepare(cfg)
    remove_stale_shards(prepared, cfg.output, cfg.split)
    stats = []
    for n, task in enumerate(prepared.tasks):
        if max_shards is not None and n >= max_shards:
            return {}
        done = finished_stats(task) or run_shard(task)
        stats.append(done)
        if progress is not None:
            progress(done)
    return finalize(cfg, prepared, stats)


def remove_stale_shards(prepared: Prepared, output: str, split: str) -> list[str]:
    """Delete `{split}-*` shard files whose index lies beyond this plan (left by a larger earlier
    plan), so the folder holds exactly this run's shards. Returns the removed names."""
    keep = {t.name for t in prepared.tasks}
    removed = []
    for path in sorted(Path(output).glob(f"{split}-[0-9]*")):
        name = path.name.split(".", 1)[0]
        if name not in keep and name[len(split) + 1:].isdigit():
            os.remove(path)
            removed.append(path.name)
    return removed
