"""Connecting to Ray: a local instance sized to this machine, or an existing cluster."""

from __future__ import annotations

import os

import ray

from pipeline.config import Config


def init_ray(cfg: Config) -> None:
    """`runtime.ray_address` "" starts a local instance; "auto" / "ray://..." joins a cluster.

    Inside `ray job submit` RAY_ADDRESS is set and wins, so jobs run unchanged on any cluster.
    """
    if ray.is_initialized():
        return
    # Ray Train's print patch tees a worker's print() to stdout *and* its logger, so every line
    # reached the console twice; workers of a local instance inherit this environment.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    address = cfg.runtime.ray_address or os.environ.get("RAY_ADDRESS", "")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    # Local, bound to loopback. The dashboard stays on: it serves the state API that Ray Train's
    # placement-group cleaner needs (without it, Tune trials running a TorchTrainer leak groups).
    # Ray would otherwise bind its services to the machine's LAN address. address="local": without
    # it, ray.init joins the cluster the last `ray start` on this machine recorded in
    # /tmp/ray/ray_current_cluster, even a stopped one, and then refuses num_cpus.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray.init(address="local", num_cpus=os.cpu_count(), dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1",
             log_to_driver=True, configure_logging=False)
