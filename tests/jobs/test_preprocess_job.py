"""`vared2 preprocess` / `make-demo-data`: CLI errors and help, and identical shards with 1 and 2
Ray workers (one Ray start for the whole module: each costs seconds)."""

from __future__ import annotations

import pytest

from jobs.cli import build_parser, main
from preprocessing.run import preprocess
from tests.preprocessing.conftest import broken_dataset, config_for  # noqa: F401 (fixture)
from tests.preprocessing.test_shards import output_bytes


def test_help_explains_the_commands_with_examples(capsys):
    for command in ("preprocess", "make-demo-data"):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args([command, "--help"])
        assert exit_.value.code == 0
        text = capsys.readouterr().out
        assert "examples:" in text and f"vared2 {command}" in text


@pytest.mark.parametrize("argv,message", [
    (["preprocess", "--annotations", "/nonexistent.csv", "--no-ray"], "annotations"),
    (["preprocess", "--codec", "av1"], "choose one of 'h264'"),
    (["preprocess", "--short-side", "8"], "short_side"),
    (["preprocess", "--workers", "0"], "workers"),
    (["preprocess", "preprocess.nope=1"], "nope"),
    (["make-demo-data", "--size", "33"], "size"),
])
def test_bad_arguments_exit_2_with_a_clear_error(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"vared2 {argv[0]}: error:" in err and message in err


def test_make_demo_data_then_preprocess_in_process(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["make-demo-data", "--out", str(out), "--train-per-class", "2", "--val-per-class",
                 "1", "--size", "32", "--seconds", "1", "--shards"]) == 0
    assert sorted(p.name for p in (out / "shards").glob("*.tar")) == ["train-000000.tar",
                                                                     "val-000000.tar"]
    assert main(["preprocess", "--preset", "demo", "--annotations", str(out / "val.csv"), "--videos",
                 str(out / "videos"), "--output", str(tmp_path / "again"), "--split", "val",
                 "--no-ray", "--quiet"]) == 0
    assert "\"num_ok\": 4" in capsys.readouterr().out
    assert (tmp_path / "again" / "val-000000.tar").read_bytes() == \
        (out / "shards" / "val-000000.tar").read_bytes()


@pytest.mark.ray
@pytest.mark.slow
def test_same_output_with_one_and_two_ray_workers(broken_dataset, tmp_path):
    import ray

    from jobs.preprocess import run_preprocess

    serial = tmp_path / "serial"
    preprocess(config_for(broken_dataset, serial))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        for workers in (1, 2):
            out = tmp_path / f"ray{workers}"
            summary = run_preprocess(config_for(broken_dataset, out), num_workers=workers,
                                     show_progress=False)
            assert summary["shards_written"] == summary["num_shards"] + 1  # one shard all failed
            assert output_bytes(out) == output_bytes(serial)
            again = run_preprocess(config_for(broken_dataset, out), num_workers=workers,
                                   show_progress=False)
            assert again["shards_written"] == 0 and output_bytes(out) == output_bytes(serial)
    finally:
        ray.shutdown()
