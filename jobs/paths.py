"""Where relative paths of a config point: against runtime.base_dir, else the working directory.

Inside `ray job submit` the working directory is a temporary copy of the code (Ray unpacks
`--working-dir` into `.../_ray_pkg_<hash>/`), which is deleted with the job and lacks git-ignored
folders such as data/: a relative data.root, storage path or sqlite store there is refused with what
to pass instead, so nothing lands in a temporary folder.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Config, RuntimeConfig

RAY_PACKAGE_MARK = "_ray_pkg_"


def base_dir(runtime: RuntimeConfig) -> Path | None:
    """The folder relative paths resolve against; None inside a Ray job package without base_dir."""
    if runtime.base_dir:
        return Path(runtime.base_dir).expanduser().resolve()
    cwd = Path.cwd()
    return None if RAY_PACKAGE_MARK in str(cwd) else cwd


def resolve(cfg: Config, path: str, what: str) -> str:
    """`path` made absolute against `base_dir(cfg.runtime)`; URLs, empty and absolute paths unchanged."""
    return resolve_for(cfg.runtime, path, what)


def resolve_for(runtime: RuntimeConfig, path: str, what: str) -> str:
    """`resolve` given only the runtime section (the tracking store is resolved from it alone)."""
    if not path or "://" in path or Path(path).is_absolute():
        return path
    base = base_dir(runtime)
    if base is None:
        raise ValueError(f"{what}: {path!r} is relative, and this runs inside `ray job submit`, whose working "
                         f"directory ({Path.cwd()}) is a temporary copy of the code: add runtime.base_dir=$PWD "
                         "to the job's command (the folder you submit from), or give an absolute path")
    return str((base / path).resolve())
