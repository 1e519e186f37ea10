"""Figure plumbing shared by the analyses: the Agg backend, fixed pixel sizes (no tight bbox, so a
figure's size is known before it is drawn) and tables written as both Parquet and CSV."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: workers and CI have no display

import matplotlib.pyplot as plt  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.csv as pa_csv  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

DPI = 100


@dataclass
class Figure:
    path: Path
    width: int  # pixels
    height: int
    caption: str


def new_figure(width_px: int, height_px: int, nrows: int = 1, ncols: int = 1, **kwargs):
    fig, axes = plt.subplots(nrows, ncols, figsize=(width_px / DPI, height_px / DPI), dpi=DPI,
                             squeeze=False, **kwargs)
    return fig, axes


def save_figure(fig, path: str | Path, caption: str) -> Figure:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = (int(round(v)) for v in fig.get_size_inches() * DPI)
    fig.savefig(path, dpi=DPI, format="png")
    plt.close(fig)
    return Figure(path, width, height, caption)


def write_table(table: pa.Table, stem: str | Path) -> tuple[Path, Path]:
    """`stem`.parquet and `stem`.csv."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    parquet, csv = stem.with_suffix(".parquet"), stem.with_suffix(".csv")
    pq.write_table(table, parquet)
    pa_csv.write_csv(table, csv)
    return parquet, csv


def class_label(names: list[str] | None, index: int) -> str:
    if index < 0:
        return "all"
    return names[index] if names and index < len(names) else f"class {index}"
