"""Named presets: functions returning a full `Config`, the starting point of every run.

    vared2 train --preset mini_kinetics_r2plus1d model.search_space=3 train.lambda_e=0.8

Overrides given after the preset name are applied on top (`apply_overrides`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from pipeline.config.ablations import ablation_presets
from pipeline.config.data import DataConfig
from pipeline.config.model import ModelConfig
from pipeline.config.preprocess import PreprocessConfig
from pipeline.config.root import Config
from pipeline.config.runtime import RuntimeConfig
from pipeline.config.train import TrainConfig


def default() -> Config:
    """R(2+1)D-18 on Kinetics-400 at 16x112x112, S = 2, both temporal and channel redundancy."""
    return Config(name="default")


def mini_kinetics_r2plus1d() -> Config:
    """The paper's main setting: Mini-Kinetics-200, R(2+1)D-18, 16 frames, S = 2 (METHOD.md 11).

    This preset is stage 2, VA-RED² from a trained static model, on the schedule this project
    found on its generated data (benchmarks/RESULTS.md section 7; not yet run on Mini-Kinetics):

        vared2 train --preset mini_kinetics_r2plus1d model.dynamic=none train.epochs=60 \
            train.optimizer=sgd train.lr=0.05 train.lambda_e=0                # stage 1: static
        vared2 train --preset mini_kinetics_r2plus1d train.init_from=runs/<static run>/checkpoint_...

    Stage 2: AdamW, the gates at 10x the learning rate, lambda_e 3.5 ramped over the first 2 epochs,
    the distortion term at lambda_d 8, gates frozen for the last third of the 12 epochs; channel
    cheap ops and gate statistics calibrated on 8 training batches at the start. Both stages run
    with the model defaults: gates reading motion (`model.gate_input=pool_motion`) and temporal
    convs padded with the edge frame (`model.temporal_padding=replicate`; a static model trained
    with zero padding is refused by stage 2). For one checkpoint that serves many budgets
    (`vared2 evaluate --budget`), add `train.budget_rule=sandwich train.budget_offsets=4
    train.budget_offsets_epochs=all`: on the study's data it matched separately trained models from
    the trained point up and cut the gap at the cheapest budget from 19 to 7 points, for 3-5x the
    stage-2 training time.
    """
    return Config(
        name="mini_kinetics_r2plus1d",
        model=ModelConfig(backbone="r2plus1d_18", num_classes=200),
        data=DataConfig(root="data/mini_kinetics/shards", num_frames=16, frame_stride=2),
        train=TrainConfig(epochs=12, optimizer="adamw", lr=3e-4, weight_decay=1e-4, lambda_e=3.5,
                          lambda_e_warmup_epochs=2, gate_lr_mult=10.0, lambda_d=8.0,
                          gate_freeze_fraction=1 / 3, calibrate_batches=8),
        runtime=RuntimeConfig(num_workers=8, use_gpu=True, cpus_per_worker=8),
    )


def kinetics_i3d() -> Config:
    """I3D-R50 (PySlowFast layout) on Kinetics-400 at 16x224x224."""
    return Config(
        name="kinetics_i3d",
        model=ModelConfig(backbone="i3d_r50", num_classes=400),
        data=DataConfig(crop_size=224, jitter_short_side_min=256, jitter_short_side_max=320,
                        eval_short_side=256),
        runtime=RuntimeConfig(num_workers=8, use_gpu=True, cpus_per_worker=8),
    )


def kinetics_x3d() -> Config:
    """X3D-M on Kinetics-400 at 16x224x224, frame stride 5 as in the X3D paper."""
    return Config(
        name="kinetics_x3d",
        model=ModelConfig(backbone="x3d_m", num_classes=400),
        data=DataConfig(crop_size=224, frame_stride=5, jitter_short_side_min=256,
                        jitter_short_side_max=320, eval_short_side=256),
        runtime=RuntimeConfig(num_workers=8, use_gpu=True, cpus_per_worker=8),
    )


def demo() -> Config:
    """The `make demo` run: the generated digits dataset, a narrow R(2+1)D-18, 2 CPU workers.

    This is the VA-RED² stage (temporal and channel redundancy, S = 2), started from the static
    model (`jobs/demo.py` trains that one with `model.dynamic=none`, `train.lr=3e-3` and more
    epochs). It is also the schedule this project found for the method (benchmarks/RESULTS.md,
    section 7): 6 epochs, AdamW 1e-3 (gates x10), lambda_e 4 ramped over the first epoch, the
    distortion term at lambda_d 8, the gates frozen for the last third of the epochs. lambda_e sets
    the operating point: with the motion-reading gates (model.gate_input=pool_motion) 3.5 kept the
    static model's clip-1 exactly but landed at 0.753x its GFLOPs, just above the demo's 0.75x target.
    """
    return Config(
        name="demo",
        model=ModelConfig(backbone="r2plus1d_18", num_classes=4, base_width=16, dynamic="both"),
        data=DataConfig(root="data/demo/shards", num_frames=8, frame_stride=2, crop_size=64,
                        jitter_short_side_min=64, jitter_short_side_max=72, eval_short_side=64,
                        eval_clips=3, batch_size=4, eval_batch_size=8, num_workers=0, prefetch=2),
        train=TrainConfig(epochs=6, optimizer="adamw", lr=1e-3, weight_decay=1e-4, lambda_e=4.0,
                          lambda_e_warmup_epochs=1, gate_lr_mult=10.0, log_every=0, eval_every=3),
        runtime=RuntimeConfig(num_workers=2, storage_path="runs", experiment="vared2-demo",
                              registered_model="vared2-demo"),
        preprocess=PreprocessConfig(format="kinetics", output="data/demo/shards", short_side=64,
                                    fps=15.0, min_frames=8, max_shard_samples=64),
    )


def debug() -> Config:
    """Tiny everything, for tests and smoke runs: seconds per epoch on one CPU core."""
    base = demo()
    return replace(
        base,
        name="debug",
        model=replace(base.model, base_width=4, dynamic="both"),
        data=replace(base.data, root="data/debug/shards", num_frames=4, crop_size=32,
                     jitter_short_side_min=32, jitter_short_side_max=36, eval_short_side=32,
                     eval_clips=2, batch_size=4, eval_batch_size=4),
        train=TrainConfig(epochs=2, optimizer="adamw", lr=3e-3, weight_decay=1e-4, lambda_e=1.0,
                          lambda_e_warmup_epochs=1, log_every=5),
        runtime=replace(base.runtime, num_workers=1, experiment="vared2-debug",
                        registered_model="vared2-debug"),
        preprocess=replace(base.preprocess, output="data/debug/shards", short_side=32, min_frames=4),
    )


PRESETS: dict[str, Callable[[], Config]] = {
    "default": default,
    "mini_kinetics_r2plus1d": mini_kinetics_r2plus1d,
    "kinetics_i3d": kinetics_i3d,
    "kinetics_x3d": kinetics_x3d,
    "demo": demo,
    "debug": debug,
    # pipeline/config/ablations.py: the paper's ablations and baselines on demo and default
    **ablation_presets({"demo": demo, "default": default}),
}


def get_preset(name: str) -> Config:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
