"""Config of a Ray Tune sweep over the VA-RED² trade-off (lambda_e, search-space size S, any key).

`scheduler=asha` stops weak trials early on one objective (validation accuracy); `search=optuna`
is a multi-objective search (accuracy up, GFLOPs down), which runs every trial to the end, so it
goes with `scheduler=none`. The default search space is lambda_e log-uniform in
[lambda_e_min, lambda_e_max] and S in `search_spaces`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.config.base import Section

Scheduler = Literal["asha", "none"]
Search = Literal["random", "optuna"]
Objective = Literal["clip_top1", "video_top1"]


@dataclass(frozen=True)
class TuneConfig(Section):
    NAME = "tune"

    num_samples: int = 4  # trials drawn from the space (each grid point is repeated this often)
    scheduler: Scheduler = "asha"
    search: Search = "random"  # "random" also expands grid axes; "optuna" = multi-objective TPE
    objective: Objective = "clip_top1"  # the accuracy of the front (and ASHA's metric, on val)
    grace_period: int = 1  # ASHA: epochs before a trial can be stopped
    reduction_factor: int = 2  # ASHA: keep the top 1/reduction_factor at each rung
    max_concurrent: int = 0  # 0 = as many trials as the cluster's CPUs/GPUs hold
    max_trial_failures: int = 2  # a failed trial restarts (its TorchTrainer resumes) this often
    gflops_budget: float = 0.0  # champion = most accurate within this GFLOPs avg (0 = no limit)
    lambda_e_min: float = 0.01
    lambda_e_max: float = 10.0
    search_spaces: tuple[int, ...] = (2, 3, 4)
    static_baseline: bool = True  # train a static model beside the sweep (alias static-baseline)
    seed: int = 0

    def validate(self) -> None:
        self._require(self.num_samples >= 1, "num_samples", "must be at least 1")
        self._require(self.grace_period >= 1, "grace_period", "must be at least 1")
        self._require(self.reduction_factor >= 2, "reduction_factor", "must be at least 2")
        self._require(self.max_concurrent >= 0, "max_concurrent", "must be 0 (auto) or more")
        self._require(self.max_trial_failures >= 0, "max_trial_failures", "must be 0 or more")
        self._require(self.gflops_budget >= 0, "gflops_budget", "must be 0 (no limit) or positive")
        self._require(self.lambda_e_min > 0, "lambda_e_min", "must be positive (log-uniform)")
        self._require(self.lambda_e_max > 0, "lambda_e_max", "must be positive (log-uniform)")
        self._require(bool(self.search_spaces) and set(self.search_spaces) <= {2, 3, 4},
                      "search_spaces", "choose from 2, 3, 4")
        # Cross-field checks (optuna needs scheduler=none, min <= max) live in jobs/tune.py: dotted
        # overrides are applied one at a time, and each intermediate config must validate.


# --- search-space specs --------------------------------------------------------------------------
# A sweep's space maps dotted config keys to a distribution, written the same way in a YAML/JSON
# file (`train.lambda_e: {loguniform: [0.01, 10]}`) and on the command line
# (`--param train.lambda_e=loguniform:0.01,10`). A bare value is a constant override.

SPACE_KINDS = ("loguniform", "uniform", "randint", "choice", "grid")


def _scalar(text: str):
    """'0.5' -> 0.5, '3' -> 3, 'true' -> True, anything else stays a string."""
    import yaml

    value = yaml.safe_load(text)
    return value if isinstance(value, (int, float, bool, str)) or value is None else text


def parse_param(item: str) -> tuple[str, tuple[str, list]]:
    """`key=kind:a,b,...` or `key=value` -> (key, (kind, args)); kind "const" for a bare value."""
    key, sep, rest = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--param {item!r} is not of the form key.path=KIND:a,b or key.path=value; "
                         f"KIND is one of {', '.join(SPACE_KINDS)}")
    kind, colon, args = rest.partition(":")
    if colon and kind.strip() in SPACE_KINDS:
        return key.strip(), (kind.strip(), [_scalar(a.strip()) for a in args.split(",") if a.strip()])
    return key.strip(), ("const", [_scalar(rest.strip())])


def spec_from_mapping(data) -> dict[str, tuple[str, list]]:
    """A parsed YAML/JSON space file -> {key: (kind, args)}."""
    if not isinstance(data, dict):
        raise ValueError("a search-space file holds a mapping of dotted config keys to "
                         f"{{KIND: [values]}} (KIND one of {', '.join(SPACE_KINDS)}) or plain values")
    spec = {}
    for key, value in data.items():
        if isinstance(value, dict):
            if len(value) != 1 or next(iter(value)) not in SPACE_KINDS:
                raise ValueError(f"search space {key!r}: {value!r} must be one of "
                                 f"{', '.join('{' + k + ': [...]}' for k in SPACE_KINDS)}")
            kind, args = next(iter(value.items()))
            spec[str(key)] = (kind, list(args) if isinstance(args, (list, tuple)) else [args])
        else:
            spec[str(key)] = ("const", [value])
    return spec


def check_spec(cfg, spec: dict[str, tuple[str, list]]) -> None:
    """Every key must exist and every value it can take must be valid (ValueError otherwise)."""
    from pipeline.config.overrides import apply_overrides

    for key, (kind, args) in spec.items():
        if kind not in SPACE_KINDS + ("const",):
            raise ValueError(f"search space {key!r}: unknown kind {kind!r}; choose one of "
                             f"{', '.join(SPACE_KINDS)}")
        if kind in ("loguniform", "uniform", "randint"):
            if len(args) != 2 or not all(isinstance(a, (int, float)) for a in args) or args[0] >= args[1]:
                raise ValueError(f"search space {key!r}: {kind} needs two numbers low < high, got {args!r}")
            if kind == "loguniform" and args[0] <= 0:
                raise ValueError(f"search space {key!r}: loguniform needs low > 0, got {args[0]!r}")
        elif not args:
            raise ValueError(f"search space {key!r}: {kind} needs at least one value")
        for value in args:
            apply_overrides(cfg, {key: int(value) if kind == "randint" else value})
