"""Annotation readers: Kinetics-400/600/700, Mini-Kinetics-200, Moments in Time, plain `path,label`.

Each reader returns `VideoRow`s (one per annotation row, found on disk or not) and the class names
in their stable order; `write_class_list` / `read_class_list` keep that order beside the shards.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
CLASS_LIST = "classes.txt"


@dataclass(frozen=True)
class VideoRow:
    """One annotated video: `path` is None when the file is not on disk (status `missing`)."""

    source_id: str  # stable id of the video, e.g. `-Qhiiw9yJvc_000825_000835` or `label/x.mp4`
    label: str
    path: str | None


def _read_csv(path: str | os.PathLike) -> list[list[str]]:
    """All non-empty rows of a CSV; `utf-8-sig` drops a BOM, the csv module handles quoting."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]


def index_videos(videos_dir: str | os.PathLike) -> dict[str, str]:
    """File stem -> path of every video under `videos_dir` (flat or per-class folders).

    One directory walk instead of one `stat` per row: Kinetics has ~250k rows. When a stem occurs
    twice (e.g. `.mp4` and `.mkv`), the `.mp4` and then the lexically first path wins.
    """
    root = Path(videos_dir)
    if not root.is_dir():
        raise ValueError(f"videos folder {str(root)!r} does not exist")
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in VIDEO_EXTENSIONS:
                continue
            path = os.path.join(dirpath, name)
            old = found.get(stem)
            if old is None or (ext.lower() == ".mp4" and not old.lower().endswith(".mp4")):
                found[stem] = path
    return found


def _split_name(split: str) -> str:
    """K400's validate.csv writes `val`, other releases `validate`: one name for both."""
    return {"validate": "val", "validation": "val"}.get(split, split)


def kinetics_stem(youtube_id: str, start: str, end: str) -> str:
    """`{youtube_id}_{time_start:06d}_{time_end:06d}`, the naming of the Kinetics downloaders."""
    try:
        return f"{youtube_id}_{int(float(start)):06d}_{int(float(end)):06d}"
    except ValueError:
        raise ValueError(f"bad Kinetics times {start!r}, {end!r} for {youtube_id!r}") from None


def read_kinetics(csv_path: str | os.PathLike, videos_dir: str | os.PathLike, split: str | None = None,
                  *, keep_ids: set[str] | None = None) -> tuple[list[VideoRow], list[str]]:
    """Rows of a Kinetics-400/600/700 CSV (`label,youtube_id,time_start,time_end,split[,is_cc]`).

    `split` keeps rows whose `split` column matches (K400 writes `val` in validate.csv; `validate`
    is treated as `val`); `keep_ids` (Mini-Kinetics) keeps rows whose youtube id or video stem is in it.
    Classes are the sorted labels of the whole CSV, so train and val agree.
    """
    rows = _read_csv(csv_path)
    header = [h.strip().lower() for h in rows[0]] if rows else []
    needed = ["label", "youtube_id", "time_start", "time_end"]
    if not all(h in header for h in needed):
        raise ValueError(f"{csv_path}: not a Kinetics CSV; the header must name {', '.join(needed)} "
                         f"(found {', '.join(header) or 'nothing'})")
    col = {h: header.index(h) for h in header}
    files = index_videos(videos_dir)
    out: list[VideoRow] = []
    labels: set[str] = set()
    for n, row in enumerate(rows[1:], start=2):
        if len(row) < len(needed):
            raise ValueError(f"{csv_path}:{n}: expected at least {len(needed)} fields, got {row!r}")
        label = row[col["label"]].strip()
        labels.add(label)
        if split is not None and "split" in col:
            row_split = row[col["split"]].strip()
            if _split_name(row_split) != _split_name(split):
                continue
        youtube_id = row[col["youtube_id"]].strip()
        stem = kinetics_stem(youtube_id, row[col["time_start"]], row[col["time_end"]])
        if keep_ids is not None and youtube_id not in keep_ids and stem not in keep_ids:
            continue
        # Some downloaders name files by the bare YouTube id; the id stays the Kinetics stem.
        out.append(VideoRow(source_id=stem, label=label, path=files.get(stem, files.get(youtube_id))))
    return out, sorted(labels)


def read_id_list(path: str | os.PathLike) -> set[str]:
    """A Mini-Kinetics id list: one youtube id or video name per line (extension and folder dropped)."""
    ids = set()
    for line in Path(path).read_text(encoding="utf-8-sig").splitlines():
        line = line.strip().split(",")[0].strip()
        if line and not line.startswith("#"):
            ids.add(os.path.splitext(os.path.basename(line))[0])
    if not ids:
        raise ValueError(f"{path}: the id list is empty")
    return ids


def read_mini_kinetics(k400_csv: str | os.PathLike, id_list: str | os.PathLike,
                       videos_dir: str | os.PathLike, split: str | None = None
                       ) -> tuple[list[VideoRow], list[str]]:
    """Mini-Kinetics-200: the Kinetics-400 rows whose id is listed; classes are those that remain."""
    rows, _ = read_kinetics(k400_csv, videos_dir, split, keep_ids=read_id_list(id_list))
    return rows, sorted({r.label for r in rows})


def read_moments(annotations: str | os.PathLike, videos_dir: str | os.PathLike, split: str = "train"
                 ) -> tuple[list[VideoRow], list[str]]:
    """Moments in Time: `relative/path.mp4,label,agree,disagree` rows, no header guaranteed.

    `annotations` is the folder holding `trainingSet.csv`, `validationSet.csv` and
    `moments_categories.txt` (which fixes the class order), or one of the CSVs itself.
    """
    annotations = Path(annotations)
    folder = annotations if annotations.is_dir() else annotations.parent
    csv_path = annotations
    if annotations.is_dir():
        name = {"train": "trainingSet.csv", "val": "validationSet.csv",
                "validation": "validationSet.csv"}.get(split)
        if name is None:
            raise ValueError(f"Moments in Time split {split!r} is not valid; choose 'train' or 'val'")
        csv_path = folder / name
    if not csv_path.is_file():
        raise ValueError(f"Moments in Time annotations {str(csv_path)!r} do not exist")
    categories = folder / "moments_categories.txt"
    classes = read_class_index(categories) if categories.is_file() else None
    root = Path(videos_dir)
    out, labels = [], set()
    for n, row in enumerate(_read_csv(csv_path), start=1):
        rel = row[0].strip()
        if n == 1 and not os.path.splitext(rel)[1]:  # a header line such as `video,label,...`
            continue
        if len(row) < 2:
            raise ValueError(f"{csv_path}:{n}: expected `path,label,...`, got {row!r}")
        label = row[1].strip()
        labels.add(label)
        path = root / rel
        out.append(VideoRow(source_id=rel, label=label, path=str(path) if path.is_file() else None))
    return out, classes if classes is not None else sorted(labels)


def read_path_label_csv(csv_path: str | os.PathLike, videos_dir: str | os.PathLike | None = None
                        ) -> tuple[list[VideoRow], list[str]]:
    """A plain `path,label` CSV (optional header); relative paths are taken under `videos_dir`."""
    root = Path(videos_dir) if videos_dir else Path(csv_path).parent
    out, labels = [], set()
    for n, row in enumerate(_read_csv(csv_path), start=1):
        if len(row) < 2:
            raise ValueError(f"{csv_path}:{n}: expected `path,label`, got {row!r}")
        rel, label = row[0].strip(), row[1].strip()
        if n == 1 and (rel.lower(), label.lower()) == ("path", "label"):
            continue
        path = Path(rel) if os.path.isabs(rel) else root / rel
        labels.add(label)
        out.append(VideoRow(source_id=rel, label=label, path=str(path) if path.is_file() else None))
    return out, sorted(labels)


def read_class_index(path: str | os.PathLike) -> list[str]:
    """Class order from `label,index` lines (Moments, Mini-Kinetics) or one name per line."""
    lines = [ln for ln in Path(path).read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    pairs = []
    for n, line in enumerate(lines):
        row = next(csv.reader(io.StringIO(line)))
        if len(row) >= 2 and row[-1].strip().lstrip("-").isdigit():
            pairs.append((int(row[-1]), ",".join(row[:-1]).strip()))
        else:
            pairs.append((n, line.strip()))
    pairs.sort()
    if [i for i, _ in pairs] != list(range(len(pairs))) and [i for i, _ in pairs] != list(
            range(1, len(pairs) + 1)):
        raise ValueError(f"{path}: class indices are not 0..N-1 (or 1..N)")
    names = [name for _, name in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: duplicate class names")
    return names


def write_class_list(path: str | os.PathLike, classes: list[str]) -> None:
    """One class name per line; the line number (from 0) is the label index."""
    for name in classes:
        if "\n" in name or "\r" in name or not name:
            raise ValueError(f"class name {name!r} cannot be written one per line")
    Path(path).write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")


def read_class_list(path: str | os.PathLike) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


def read_annotations(fmt: str, annotations: str, videos: str, split: str, *, subset: str = ""
                     ) -> tuple[list[VideoRow], list[str]]:
    """Dispatch on `PreprocessConfig.format`."""
    if not annotations:
        raise ValueError("preprocess.annotations is empty; give the annotation CSV (or folder)")
    if not os.path.exists(annotations):
        raise ValueError(f"annotations {annotations!r} do not exist")
    if fmt == "kinetics":
        return read_kinetics(annotations, videos, split)
    if fmt == "mini_kinetics":
        if not subset:
            raise ValueError("format 'mini_kinetics' needs preprocess.subset (the id list of the split)")
        return read_mini_kinetics(annotations, subset, videos, split)
    if fmt == "moments":
        return read_moments(annotations, videos, split)
    if fmt == "csv":
        return read_path_label_csv(annotations, videos or None)
    raise ValueError(f"annotation format {fmt!r} is not valid; choose kinetics, mini_kinetics, "
                     f"moments or csv")
