"""The paper's ablations and Table 7 baselines as named presets, built from `demo` or `default`:

    vared2 train --preset demo_ablation_temporal        # temporal redundancy only (S = 2)
    for p in $(python -c "from pipeline.config.ablations import sweep; print(*sweep('demo'))"); do
        vared2 train --preset $p; done                    # the whole ablation sweep, one run each

Axes (METHOD.md section 8): temporal-only / channel-only / both at S = 2; both at S = 3, 4; both
without the efficiency loss (lambda_e = 0); plus the static model, magnitude pruning and
CGNet-style channel gating, so one sweep fills the comparison table.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from pipeline.config.root import Config

BASES = ("demo", "default")


def ablation(cfg: Config, base: str, *, dynamic: str = "both", search_space: int = 2,
             efficiency_loss: bool = True, baseline: str = "none", suffix: str) -> Config:
    """`cfg` (the `base` preset) with one ablation applied; the preset name `{base}_{suffix}` names
    its runs."""
    model = replace(cfg.model, dynamic=dynamic, search_space=search_space, baseline=baseline)
    train = cfg.train if efficiency_loss else replace(cfg.train, lambda_e=0.0, lambda_e_warmup_epochs=0)
    return replace(cfg, name=f"{base}_{suffix}", model=model, train=train)


# suffix -> ablation arguments. A literal table: grep finds every preset it makes.
ABLATIONS: dict[str, dict] = {
    "ablation_temporal": {"dynamic": "temporal"},
    "ablation_channel": {"dynamic": "channel"},
    "ablation_both": {"dynamic": "both"},
    "ablation_s3": {"dynamic": "both", "search_space": 3},
    "ablation_s4": {"dynamic": "both", "search_space": 4},
    "ablation_no_le": {"dynamic": "both", "efficiency_loss": False},
    "baseline_static": {"dynamic": "none"},
    "baseline_magnitude": {"dynamic": "none", "baseline": "magnitude"},
    "baseline_channel_gating": {"dynamic": "none", "baseline": "channel_gating"},
}


def _preset(builder: Callable[[], Config], base: str, suffix: str) -> Callable[[], Config]:
    def make() -> Config:
        return ablation(builder(), base, suffix=suffix, **ABLATIONS[suffix])

    make.__name__ = f"{base}_{suffix}"
    make.__doc__ = f"`{base}` with {ABLATIONS[suffix]} (pipeline/config/ablations.py)."
    return make


def ablation_presets(bases: dict[str, Callable[[], Config]]) -> dict[str, Callable[[], Config]]:
    """{`{base}_{suffix}`: preset function} for every base builder given (presets.py passes its
    `demo` and `default`, so this module never imports the presets)."""
    if set(bases) != set(BASES):
        raise ValueError(f"ablation bases must be {BASES}; got {sorted(bases)}")
    return {f"{base}_{suffix}": _preset(bases[base], base, suffix) for base in BASES for suffix in ABLATIONS}


def sweep(base: str = "demo") -> list[str]:
    """The preset names of one full ablation sweep on `base`, in table order."""
    if base not in BASES:
        raise ValueError(f"base={base!r} is not valid; choose one of {BASES}")
    return [f"{base}_{suffix}" for suffix in ABLATIONS]
