"""MLflow behind one small module: a `Tracker` per tracking store records runs, params, metrics,
dataset inputs, artifacts and models; `NullTracker` has its interface and no store.

The tracking store is `runtime.tracking_uri`, else `$MLFLOW_TRACKING_URI`, else a local SQLite file
`mlruns.db` (artifacts in `mlartifacts/`). Models are logged as an MLflow pyfunc that wraps the
weights (`checkpoint.pt`, read with `weights_only=True`) and the config JSON; loading rebuilds the
VaredModel from the config, so it runs in hard mode with data-dependent control flow, which
`torch.export` (mlflow.pytorch's default) cannot capture.
"""

from __future__ import annotations

import contextlib
import hashlib
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

from pipeline.config import Config, DataConfig, RuntimeConfig, flatten, to_dict

DEFAULT_DB = "mlruns.db"
# MLflow 3's UI opens an experiment by its kind: on the runs for model training, on the GenAI
# overview (traces, prompts) otherwise.
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"

# Quiet by default: no artifact download bars, no database-migration INFO lines on the console.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
logging.getLogger("mlflow").setLevel(logging.WARNING)


def store_uri(runtime: RuntimeConfig) -> str:
    """runtime.tracking_uri, else $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db; a relative sqlite
    file resolves against runtime.base_dir (jobs/paths.py)."""
    from jobs.paths import resolve_for

    uri = runtime.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "") or f"sqlite:///{DEFAULT_DB}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + resolve_for(runtime, uri[len("sqlite:///"):], "the MLflow tracking store (sqlite)")
    return uri


def tracking_uri(cfg: Config) -> str:
    return store_uri(cfg.runtime)


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


SPOOL = ".vared2-unsent-metrics.jsonl"
OUTAGE_PROBE_S = 3.0


def _server_down(uri: str) -> bool:
    """An http(s) tracking server that does not accept a connection within OUTAGE_PROBE_S."""
    return uri.startswith(("http://", "https://")) and _connect_error(uri, OUTAGE_PROBE_S) is not None


@contextlib.contextmanager
def _process_uri(uri: str):
    """MLflow's fluent calls (start_run, pyfunc.log_model / load_model, register_model) read the
    process-wide tracking URI: set it for the call only, then put it and $MLFLOW_TRACKING_URI (which
    mlflow.set_tracking_uri exports) back as they were."""
    from mlflow.tracking._tracking_service import utils

    before, env = getattr(utils, "_tracking_uri", None), os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)
        if env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env


def manifest_hash(data_root: str | Path, split: str = "*") -> str:
    """sha256 over the `{split}-manifest.parquet` files of the shard folder (names and bytes); every
    split's by default."""
    files = sorted(Path(data_root).glob(f"{split}-manifest.parquet"))
    if not files:
        return "none"
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def shard_dataset(root: str, split: str):
    """One split of a shard folder as an MLflow dataset: source = the folder, digest = the hash of
    the split's manifest, profile = its shard count."""
    from mlflow.entities import Dataset

    remote = "://" in root
    uri = root if remote else Path(root).resolve().as_uri()
    shards = [] if remote else list(Path(root).glob(f"{split}-[0-9][0-9][0-9][0-9][0-9][0-9].tar"))
    label = "/".join(Path(root.split("://")[-1]).parts[-2:])
    return Dataset(name=f"{label}/{split}", digest=manifest_hash(root, split),
                   source_type=root.split("://")[0] if remote else "local", source=json.dumps({"uri": uri}),
                   profile=json.dumps({"num_shards": len(shards), "split": split}))


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


class Tracker:
    """The tracking store of one runtime config: its URI resolved once, one MlflowClient and the
    experiment's id, each made on first use (so a tracker that logs nothing opens no store)."""

    def __init__(self, runtime: RuntimeConfig):
        self.uri = store_uri(runtime)
        self.experiment = runtime.experiment
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            check_reachable(self.uri)
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        """runtime.experiment, created as a model-training experiment (and tagged so if it is not)."""
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(self.experiment)
            if exp is None:
                self._experiment_id = self.client.create_experiment(
                    self.experiment, artifact_location=self._artifact_location(),
                    tags={EXPERIMENT_KIND: MODEL_TRAINING})
            else:
                if EXPERIMENT_KIND not in exp.tags:
                    self.client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
                self._experiment_id = exp.experiment_id
        return self._experiment_id

    def _artifact_location(self) -> str | None:
        # Keep artifacts beside the database the URI names, not in the working directory: inside
        # `ray job submit` that is a temporary copy of the code, deleted with the job.
        if not self.uri.startswith("sqlite:///"):
            return None
        return (Path(self.uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()

    def start_run(self, cfg: Config, *, run_name: str, tags: dict[str, str] | None = None,
                  parent_run_id: str | None = None) -> str:
        """Create a run with the flattened config as params and the config JSON as an artifact."""
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run_id = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags).info.run_id
        self.log_params(run_id, flatten(cfg))
        self.log_json(run_id, to_dict(cfg), "config.json")
        return run_id

    def find_run(self, run_name: str) -> str | None:
        """The newest unfinished-or-finished run with this name (so a resumed job logs to the same run)."""
        runs = self.client.search_runs([self.experiment_id], filter_string=f"attributes.run_name = '{run_name}'",
                                       order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0].info.run_id if runs else None

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        batch = [mlflow.entities.Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(batch), 100):
            self.client.log_batch(run_id, params=batch[i:i + 100])

    def log_datasets(self, run_id: str, data: DataConfig) -> None:
        """The training and validation splits of data.root as the run's dataset inputs."""
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        self.client.log_inputs(run_id, datasets=[
            DatasetInput(shard_dataset(data.root, split), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
            for split, context in ((data.train_split, "training"), (data.val_split, "validation"))])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int,
                    spool: str | Path | None = None) -> None:
        """Log one step's metrics. With `spool` (a folder; training passes the run's storage folder), a
        tracking server that is down does not stop or stall training: the metrics, with their own
        timestamps, are appended to `spool/SPOOL` and sent, in order, by the next call that finds the
        server back (or by `flush_spool` at the end of the run), which tags the run `vared2.tracking_outage`."""
        import time

        batch = [mlflow.entities.Metric(k, float(v), int(1000 * time.time()), step)
                 for k, v in metrics.items() if isinstance(v, (int, float))]
        if spool is not None and _server_down(self.uri):
            path = Path(spool) / SPOOL
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"run_id": run_id, "metrics": [[m.key, m.value, m.timestamp, m.step]
                                                                  for m in batch]}) + "\n")
            print(f"tracking server {self.uri} is down: step {step}'s metrics kept in {path}, sent when it is back")
            return
        if spool is not None:
            self.flush_spool(spool)
        self.client.log_batch(run_id, metrics=batch)

    def flush_spool(self, spool: str | Path) -> int:
        """Send the metrics an outage left in `spool/SPOOL`; returns how many steps were sent."""
        path = Path(spool) / SPOOL
        if not path.exists():
            return 0
        c = self.client
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

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.client.set_tag(run_id, key, value)

    def log_json(self, run_id: str, data: Any, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
            self.log_artifact(run_id, path)

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    def log_model(self, cfg: Config, run_id: str, checkpoint_dir: str | Path,
                  registered_model: str | None = None):
        """Log the checkpoint as a pyfunc model of `run_id`; optionally register a version of it."""
        check_reachable(self.uri)
        ckpt = Path(checkpoint_dir) / "checkpoint.pt"
        code = Path(__file__).with_name("served_model.py")  # a path: importing it would set_model here

        with _process_uri(self.uri), mlflow.start_run(run_id=run_id), warnings.catch_warnings():
            # The signature describes the input; an example clip would only add megabytes to each model.
            warnings.filterwarnings("ignore", message=".*An input example was not provided")
            # Models from code: the logged model is this project's `jobs/served_model.py` (no pickled
            # object), which rebuilds the model from the config and `weights_only` weights.
            return mlflow.pyfunc.log_model(
                name="model", python_model=str(code), artifacts={"checkpoint": str(ckpt)},
                signature=model_signature(cfg),
                pip_requirements=["torch==2.13.0", "mlflow>=3.17,<3.18", "numpy"],
                registered_model_name=registered_model)

    def register_model(self, run_id: str, name: str, *, tags: dict[str, str]):
        """A new version of registered model `name` (created if need be) for the model logged by `run_id`."""
        check_reachable(self.uri)
        with _process_uri(self.uri):
            return mlflow.register_model(f"runs:/{run_id}/model", name, tags=tags)

    def load_model(self, model_uri: str):
        """(config, VaredModel) from an MLflow model URI such as `models:/NAME@champion` or `runs:/ID/model`."""
        check_reachable(self.uri)
        with _process_uri(self.uri):
            loaded = mlflow.pyfunc.load_model(model_uri)
        wrapper = loaded.unwrap_python_model()
        return wrapper.config, wrapper.model


class NullTracker:
    """Tracker's logging interface without a store, for tests: each call is kept in `calls` as
    (method, run_id, *arguments); runs get ids `null-1`, `null-2`, ... and no run is ever found."""

    uri = "null:"

    def __init__(self):
        self.calls: list[tuple] = []

    def _record(self, *call) -> None:
        self.calls.append(call)

    def called(self, method: str) -> list[tuple]:
        """The recorded calls of `method`, without the method name."""
        return [c[1:] for c in self.calls if c[0] == method]

    def start_run(self, cfg: Config, *, run_name: str, tags: dict[str, str] | None = None,
                  parent_run_id: str | None = None) -> str:
        run_id = f"null-{len(self.called('start_run')) + 1}"
        self._record("start_run", run_id, run_name, dict(tags or {}), parent_run_id)
        return run_id

    def find_run(self, run_name: str) -> str | None:
        return None

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        self._record("log_params", run_id, dict(params))

    def log_datasets(self, run_id: str, data: DataConfig) -> None:
        self._record("log_datasets", run_id, data)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int,
                    spool: str | Path | None = None) -> None:
        self._record("log_metrics", run_id, dict(metrics), step)

    def flush_spool(self, spool: str | Path) -> int:
        return 0

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self._record("set_tag", run_id, key, value)

    def log_json(self, run_id: str, data: Any, name: str) -> None:
        self._record("log_json", run_id, data, name)

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self._record("log_artifact", run_id, Path(path), artifact_path)

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self._record("end_run", run_id, status)

    def log_model(self, cfg: Config, run_id: str, checkpoint_dir: str | Path,
                  registered_model: str | None = None) -> None:
        self._record("log_model", run_id, Path(checkpoint_dir), registered_model)
