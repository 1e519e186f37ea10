"""Relative paths resolve against runtime.base_dir, and are refused inside a Ray job's package copy."""

import pytest

from pipeline.config import load_config


def test_relative_paths_resolve_against_base_dir(tmp_path, monkeypatch):
    from jobs import tracking
    from jobs.train import pin_paths

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    cfg = pin_paths(load_config("demo", [f"runtime.base_dir={tmp_path}"]))
    assert cfg.data.root == str(tmp_path / "data/demo/shards")
    assert cfg.runtime.storage_path == str(tmp_path / "runs")
    assert cfg.runtime.tracking_uri == f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert tracking.tracking_uri(load_config("demo", [f"runtime.base_dir={tmp_path}",
                                                      "runtime.tracking_uri=sqlite:///x/m.db"])) \
        == f"sqlite:///{tmp_path / 'x/m.db'}"


def test_inside_a_ray_job_package_relative_paths_are_refused_with_what_to_pass(tmp_path, monkeypatch):
    from jobs.train import pin_paths

    package = tmp_path / "runtime_resources" / "working_dir_files" / "_ray_pkg_0123abcd"
    package.mkdir(parents=True)
    monkeypatch.chdir(package)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ValueError, match=r"runtime.base_dir=\$PWD"):
        pin_paths(load_config("demo"))
    cfg = pin_paths(load_config("demo", [f"runtime.base_dir={tmp_path}"]))
    assert "_ray_pkg_" not in cfg.data.root + cfg.runtime.storage_path + cfg.runtime.tracking_uri
