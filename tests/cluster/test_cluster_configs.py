"""cluster/: the launcher YAML against the schema shipped inside `ray`, the KubeRay manifests against
the fields KubeRay requires (ray.io/v1 RayCluster / RayJob), and what the configs must agree on."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"


def ray_schema() -> dict:
    import ray

    return json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())


def launcher_config() -> dict:
    return yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())


def kuberay(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((CLUSTER / "kuberay" / name).read_text()) if d]


def constraint(name: str) -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.lower().startswith(name.lower() + "=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{name} not pinned in constraints.txt")


# --- the Ray cluster launcher ----------------------------------------------------------------


def test_launcher_yaml_validates_against_the_schema_inside_ray():
    schema = ray_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(launcher_config()), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


@pytest.mark.parametrize("mutate", [
    lambda c: c["available_node_types"]["gpu_worker"].update(min_worker=0),  # typo'd key
    lambda c: c["docker"].update(imagee="x"),
    lambda c: c.pop("provider"),
    lambda c: c["available_node_types"]["gpu_worker"]["resources"].update(GPU=-1),
])
def test_the_schema_check_rejects_a_broken_launcher_yaml(mutate):
    schema = ray_schema()
    config = copy.deepcopy(launcher_config())
    mutate(config)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, schema, cls=jsonschema.validators.validator_for(schema))


def test_launcher_has_a_head_and_autoscaling_gpu_workers_on_one_image():
    config = launcher_config()
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpu = [t for name, t in types.items() if t["resources"].get("GPU", 0) > 0]
    assert gpu and all(t["min_workers"] == 0 < t["max_workers"] for t in gpu)  # scale from zero
    assert sum(t.get("max_workers", 0) for name, t in types.items()
               if name != config["head_node_type"]) <= config["max_workers"]
    assert config["docker"]["image"] and "worker_image" not in config["docker"]


def test_launcher_mounts_shared_storage_and_points_every_node_at_mlflow():
    config = launcher_config()
    assert any("/mnt/shared:/mnt/shared" in opt for opt in config["docker"]["run_options"])
    assert any("mount -t nfs4" in cmd and "/mnt/shared" in cmd
               for cmd in config["initialization_commands"])
    head = " ".join(config["head_start_ray_commands"])
    workers = " ".join(config["worker_start_ray_commands"])
    assert "mlflow server" in head and "--port 5000" in head
    # The head's own address, not localhost: the driver on the head hands it to the workers.
    assert "MLFLOW_TRACKING_URI=http://$(hostname -I" in head
    assert "MLFLOW_TRACKING_URI=http://$RAY_HEAD_IP:5000" in workers


# --- KubeRay ---------------------------------------------------------------------------------


def check_cluster_spec(spec: dict, where: str) -> list[dict]:
    """The RayClusterSpec fields KubeRay reads; returns every container of every group."""
    assert spec["rayVersion"] == constraint("ray"), where
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict), where
    assert all(isinstance(v, str) for v in head["rayStartParams"].values()), \
        f"{where}: rayStartParams values must be strings"
    containers = list(head["template"]["spec"]["containers"])
    head_ports = {p["containerPort"] for p in containers[0]["ports"]}
    assert {6379, 8265, 10001} <= head_ports, where
    groups = spec["workerGroupSpecs"]
    assert len({g["groupName"] for g in groups}) == len(groups), f"{where}: duplicate groupName"
    for group in groups:
        name = f"{where} group {group['groupName']}"
        assert isinstance(group["rayStartParams"], dict), name
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name
        assert group["template"]["spec"]["containers"], name
        containers += group["template"]["spec"]["containers"]
    gpu = [g for g in groups
           if any("nvidia.com/gpu" in c["resources"].get("limits", {})
                  for c in g["template"]["spec"]["containers"])]
    assert gpu, f"{where}: no GPU worker group"
    for group in gpu:
        assert group["maxReplicas"] > group["minReplicas"], "the GPU group must autoscale"
        for c in group["template"]["spec"]["containers"]:
            # Extended resources: requests, if given, must equal limits.
            assert c["resources"]["requests"].get("nvidia.com/gpu", c["resources"]["limits"]
                                                  ["nvidia.com/gpu"]) == \
                c["resources"]["limits"]["nvidia.com/gpu"]
    for c in containers:
        assert c["name"] and c["image"] and c["resources"]["limits"], where
    assert spec.get("enableInTreeAutoscaling") is True, where
    return containers


def test_raycluster_manifest_has_the_fields_kuberay_requires():
    (doc,) = kuberay("raycluster.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    assert doc["metadata"]["name"]
    check_cluster_spec(doc["spec"], "RayCluster")


def test_rayjob_manifest_has_the_fields_kuberay_requires():
    (doc,) = kuberay("rayjob.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    spec = doc["spec"]
    assert doc["metadata"]["name"]
    assert spec["entrypoint"].startswith("python -m jobs.train --preset ")
    assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec)  # exactly one of them
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] >= 0
    assert spec.get("submissionMode", "K8sJobMode") in ("K8sJobMode", "HTTPMode", "SidecarMode")
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])  # a YAML document inside a string
    assert isinstance(runtime_env, dict) and "MLFLOW_TRACKING_URI" in runtime_env["env_vars"]
    check_cluster_spec(spec["rayClusterSpec"], "RayJob")


def test_rayjob_entrypoint_is_a_valid_preset_with_valid_overrides():
    import shlex

    from pipeline.config import load_config

    (doc,) = kuberay("rayjob.yaml")
    argv = shlex.split(doc["spec"]["entrypoint"])
    assert argv[:4] == ["python", "-m", "jobs.train", "--preset"]
    cfg = load_config(argv[4], argv[5:])  # raises ValueError on a bad preset or key
    # Multi-node: results on the shared volume every pod mounts, not on a pod's disk.
    assert cfg.runtime.storage_path.startswith("/mnt/shared/")
    assert cfg.data.root.startswith("/mnt/shared/")


def test_kuberay_pods_share_one_image_one_volume_and_one_mlflow_server():
    (cluster,) = kuberay("raycluster.yaml")
    (job,) = kuberay("rayjob.yaml")
    shared = {(d["kind"], d["metadata"]["name"]): d for d in kuberay("mlflow.yaml")}
    claim = shared["PersistentVolumeClaim", "vared2-shared"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]  # mounted by pods on several nodes
    port = shared["Service", "vared2-mlflow"]["spec"]["ports"][0]["port"]
    server = shared["Deployment", "vared2-mlflow"]["spec"]["template"]["spec"]["containers"][0]
    assert server["command"] == ["mlflow", "server"] and f"--port={port}" in server["args"]
    images = {server["image"]}
    for spec in (cluster["spec"], job["spec"]["rayClusterSpec"]):
        pods = [spec["headGroupSpec"]["template"]["spec"]] + \
            [g["template"]["spec"] for g in spec["workerGroupSpecs"]]
        for pod in pods:
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert volumes["shared"]["persistentVolumeClaim"]["claimName"] == "vared2-shared"
            for c in pod["containers"]:
                images.add(c["image"])
                assert {"name": "shared", "mountPath": "/mnt/shared"} in c["volumeMounts"]
                assert {"name": "MLFLOW_TRACKING_URI", "value": f"http://vared2-mlflow:{port}"} \
                    in c["env"]
    assert len(images) == 1, images
