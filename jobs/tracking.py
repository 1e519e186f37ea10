"""MLflow behind one small module: runs, params, metrics, artifacts and the model format.

The tracking store is `runtime.tracking_uri`, else `$MLFLOW_TRACKING_URI`, else a local SQLite file
`mlruns.db` (artifacts in `mlartifacts/`). Models are logged as an MLflow pyfunc that wraps the
weights (`checkpoint.pt`, read with `weights_only=True`) and the config JSON; loading rebuilds the
VaredModel from the config, so it runs in hard mode with data-dependent control flow, which
`torch.export` (mlflow.pytorch's default) cannot capture.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
from mlflow.tracking import MlflowClient

from pipeline.config import Config, flatten, to_dict

DEFAULT_DB = "mlruns.db"

# Quiet by default: no artifact download bars, no database-migration INFO lines on the console.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
logging.getLogger("mlflow").setLevel(logging.WARNING)


def tracking_uri(cfg: Config) -> str:
    """runtime.tracking_uri, else $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db; a relative sqlite
    file resolves against runtime.base_dir (jobs/paths.py)."""
    from jobs.paths import resolve

    uri = cfg.runtime.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "") or f"sqlite:///{DEFAULT_DB}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + resolve(cfg, uri[len("sqlite:///"):], "the MLflow tracking store (sqlite)")
    return uri


_REACHABLE: set[str] = set()
PROBE_TIMEOUT_S = 10.0


def check_reachable(uri: str) -> None:
    """For an http(s) tracking server: connect once (PROBE_TIMEOUT_S) and fail with an error that
    names it, instead of minutes of MLflow's HTTP retries ending in a traceback."""
    if uri in _REACHABLE or not uri.startswith(("http://", "https://")):
        return
    err = _connect_error(uri, PROBE_TIMEOUT_S)
    if err is not None:
        raise ValueError(f"the MLflow tracking server {uri} is unreachable ({err}); start it, or point "
                         "runtime.tracking_uri / $MLFLOW_TRACKING_URI at a reachable one") from None
    _REACHABLE.add(uri)


def _connect_error(uri: str, timeout: float) -> OSError | None:
    """None when the http(s) server behind `uri` accepts a TCP connection within `timeout`."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(uri)
    try:
        socket.create_connection((parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return None
    except OSError as err:
        return err


def client(cfg: Config) -> MlflowClient:
    uri = tracking_uri(cfg)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def experiment_id(cfg: Config) -> str:
    c = client(cfg)
    exp = c.get_experiment_by_name(cfg.runtime.experiment)
    if exp is not None:
        return exp.experiment_id
    artifacts = None
    uri = tracking_uri(cfg)
    if uri.startswith("sqlite:///"):
        # Keep artifacts beside the database the URI names, not in the working directory: inside
        # `ray job submit` that is a temporary copy of the code, deleted with the job.
        artifacts = (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
    return c.create_experiment(cfg.runtime.experiment, artifact_location=artifacts)


def start_run(cfg: Config, *, run_name: str, tags: dict[str, str] | None = None,
              parent_run_id: str | None = None) -> str:
    """Create a run with the flattened config as params and the config JSON as an artifact."""
    c = client(cfg)
    all_tags = dict(tags or {})
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = c.create_run(experiment_id(cfg), run_name=run_name, tags=all_tags)
    run_id = run.info.run_id
    params = [mlflow.entities.Param(k, str(v)[:6000]) for k, v in sorted(flatten(cfg).items())]
    for i in range(0, len(params), 100):
        c.log_batch(run_id, params=params[i:i + 100])
    log_json(cfg, run_id, to_dict(cfg), "config.json")
    return run_id


def find_run(cfg: Config, run_name: str) -> str | None:
    """The newest unfinished-or-finished run with this name (so a resumed job logs to the same run)."""
    c = client(cfg)
    runs = c.search_runs([experiment_id(cfg)], filter_string=f"attributes.run_name = '{run_name}'",
                         order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


SPOOL = ".vared2-unsent-metrics.jsonl"
OUTAGE_PROBE_S = 3.0


def _server_down(uri: str) -> bool:
    """An http(s) tracking server that does not accept a connection within OUTAGE_PROBE_S."""
    return uri.startswith(("http://", "https://")) and _connect_error(uri, OUTAGE_PROBE_S) is not None


def log_metrics(cfg: Config, run_id: str, metrics: dict[str, float], step: int,
                spool: str | Path | None = None) -> None:
    """Log one step's metrics. With `spool` (a folder; training passes the run's storage folder), a
    tracking server that is down does not stop or stall training: the metrics, with their own
    timestamps, are appended to `spool/SPOOL` and sent, in order, by the next call that finds the
    server back (or by `flush_spool` at the end of the run), which tags the run `vared2.tracking_outage`."""
    import time

    batch = [mlflow.entities.Metric(k, float(v), int(1000 * time.time()), step)
             for k, v in metrics.items() if isinstance(v, (int, float))]
    uri = tracking_uri(cfg)
    if spool is not None and _server_down(uri):
        path = Path(spool) / SPOOL
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"run_id": run_id, "metrics": [[m.key, m.value, m.timestamp, m.step]
                                                              for m in batch]}) + "\n")
        print(f"tracking server {uri} is down: step {step}'s metrics kept in {path}, sent when it is back")
        return
    if spool is not None:
        flush_spool(cfg, spool)
    client(cfg).log_batch(run_id, metrics=batch)


def flush_spool(cfg: Config, spool: str | Path) -> int:
    """Send the metrics an outage left in `spool/SPOOL`; returns how many steps were sent."""
    path = Path(spool) / SPOOL
    if not path.exists():
        return 0
    c = client(cfg)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for entry in lines:
        c.log_batch(entry["run_id"], metrics=[mlflow.entities.Metric(k, v, t, s) for k, v, t, s in entry["metrics"]])
    for run_id in {e["run_id"] for e in lines}:
        steps = sorted({m[3] for e in lines if e["run_id"] == run_id for m in e["metrics"]})
        c.set_tag(run_id, "vared2.tracking_outage",
                  f"metrics of steps {steps} were logged during a tracking outage and sent after it")
    path.unlink()
    print(f"tracking server back: sent the metrics of {len(lines)} step(s) kept during the outage")
    return len(lines)


def log_json(cfg: Config, run_id: str, data: Any, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
        client(cfg).log_artifact(run_id, str(path))


def log_artifact(cfg: Config, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
    client(cfg).log_artifact(run_id, str(path), artifact_path)


def end_run(cfg: Config, run_id: str, status: str = "FINISHED") -> None:
    client(cfg).set_terminated(run_id, status)


def model_signature(cfg: Config):
    """Clips (-1, 3, T, S, S) float32 -> logits (-1, K) float32, with the `budget` parameter."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    d = cfg.data
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, d.num_frames, d.crop_size, d.crop_size))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, cfg.model.num_classes))]),
        params=ParamSchema([ParamSpec("budget", "double", 0.0)]))


def log_model(cfg: Config, run_id: str, checkpoint_dir: str | Path,
              registered_model: str | None = None):
    """Log the checkpoint as a pyfunc model of `run_id`; optionally register a version of it."""
    client(cfg)
    ckpt = Path(checkpoint_dir) / "checkpoint.pt"
    code = Path(__file__).with_name("served_model.py")  # a path: importing it would set_model here

    with mlflow.start_run(run_id=run_id), warnings.catch_warnings():
        # The signature describes the input; an example clip would only add megabytes to each model.
        warnings.filterwarnings("ignore", message=".*An input example was not provided")
        # Models from code: the logged model is this project's `jobs/served_model.py` (no pickled
        # object), which rebuilds the model from the config and `weights_only` weights.
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(code), artifacts={"checkpoint": str(ckpt)},
            signature=model_signature(cfg),
            pip_requirements=["torch==2.13.0", "mlflow>=3.17,<3.18", "numpy"],
            registered_model_name=registered_model)
    return info


def load_model(model_uri: str):
    """(config, VaredModel) from an MLflow model URI such as `models:/NAME@champion` or `runs:/ID/model`."""
    loaded = mlflow.pyfunc.load_model(model_uri)
    wrapper = loaded.unwrap_python_model()
    return wrapper.config, wrapper.model
