"""Config of optimisation and the VA-RED² schedule (METHOD.md sections 5 and 8)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.config.base import Section

Optimizer = Literal["sgd", "adamw"]
Schedule = Literal["cosine", "step", "constant"]
EfficiencyForm = Literal["squared", "linear"]
BudgetEpochs = Literal["frozen", "all"]
BudgetRule = Literal["alternate", "sandwich"]
BudgetCalibration = Literal["after_training", "on_demand"]


@dataclass(frozen=True)
class TrainConfig(Section):
    NAME = "train"

    epochs: int = 20
    optimizer: Optimizer = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: Schedule = "cosine"
    lambda_e: float = 0.5  # weight of the efficiency loss L_e
    # Its form (pipeline/train/losses.py): "squared" (the paper) or "linear" (ours).
    efficiency_form: EfficiencyForm = "squared"
    lambda_e_warmup_epochs: int = 0  # ramp lambda_e linearly from 0 over these epochs
    # Weight of the distortion term (ours, pipeline/train/losses.py): how much the gates pay for the
    # share of a layer's output a cheaper variant gets wrong on this clip. 0 = the paper's loss only.
    lambda_d: float = 8.0
    # Converting a static model (init_from): batches of training clips used to fit the channel cheap
    # ops and the gate statistics to the static model's outputs (0 = identity-copy start).
    calibrate_batches: int = 8
    # After the last epoch of a model trained with soft mixing (model.gate_training=soft): batches of
    # training clips over which the backbone's BatchNorm statistics are re-estimated under the hard
    # policy (0 = keep the soft-mode statistics). Straight-through training already runs the hard
    # policy in its forwards, so its statistics need no repair (measured: +-1 point, inside noise).
    recalibrate_batches: int = 32
    # Learning-rate multiplier of the gates (ours). With Adam a parameter moves about lr per step
    # whatever its gradient, and a gate must move its logits by ~0.5 before argmax switches.
    gate_lr_mult: float = 1.0
    # Share of the epochs, at the end, with the gates frozen (ours): the policy stops moving and the
    # network adapts to the decisions inference will make (rounded down: 6 epochs -> the last 2).
    gate_freeze_fraction: float = 1 / 3
    # Training across budgets (ours, issue 14): in the epochs with frozen gates, every other step
    # runs the policy shifted by a budget offset drawn uniformly from [-x, x] (pipeline/models/budget.py;
    # + is cheaper), so the network also learns to work under the policies the budget knob selects.
    # 0 = off: the network adapts to its trained policy only.
    budget_offsets: float = 0.0
    # When those shifted steps run: "frozen" (the epochs with frozen gates) or "all" (every epoch of
    # the dynamic stage, gates learning under shifted policies too).
    budget_offsets_epochs: BudgetEpochs = "frozen"
    # How those steps train (with budget_offsets > 0): "alternate" (every other step runs one shifted
    # policy instead of the trained one) or "sandwich" (slimmable networks' rule: every step runs the
    # trained policy, then the full, the cheapest and one shifted policy on the same clips, the last
    # two distilled from the full one; about 4x the step's cost; pipeline/train/step.py).
    budget_rule: BudgetRule = "alternate"
    # Training clips (evaluation sampling, centre crops) the budget knob is calibrated on after
    # training and by `vared2 evaluate --budget` / `vared2 flops --budget`. Measured on the accuracy
    # study (seed 1, benchmarks/RESULTS.md section 7): 48 clips left the mean cost on validation
    # clips up to 5.8% off target (the 48 were more redundant than the average clip), 240 within 1.0%,
    # at about 4x the calibration time.
    budget_calibration_clips: int = 240
    # When a VA-RED² run calibrates its knob: "after_training" (the run's last step writes the table
    # into the checkpoint it logs and registers, so the served model takes a budget) or "on_demand"
    # (skipped; `vared2 evaluate --budget` / `vared2 flops --budget` calibrate when first asked, and
    # the served model refuses a budget with an error saying so). The demo's sweep trials use
    # "on_demand": they are compared at their trained cost (measured: the demo's sweep 211 s -> 88 s).
    budget_calibration: BudgetCalibration = "after_training"
    init_from: str = ""  # static backbone for the dynamic stage: checkpoint, or run folder (its newest)
    amp: bool = True  # mixed precision, used only on GPU
    sync_bn: bool = False
    grad_clip: float = 0.0  # 0 = off
    log_every: int = 20  # steps between progress lines; 0 = only the epoch's line
    eval_every: int = 1  # epochs between validations (the last epoch is always validated)
    seed: int = 0

    def validate(self) -> None:
        self._require(self.epochs >= 1, "epochs", "must be at least 1")
        self._require(self.lr > 0, "lr", "must be positive")
        self._require(self.lambda_e >= 0, "lambda_e", "must be 0 or more")
        self._require(self.lambda_d >= 0, "lambda_d", "must be 0 or more")
        self._require(0 <= self.gate_freeze_fraction < 1, "gate_freeze_fraction", "must lie in [0, 1)")
        self._require(self.calibrate_batches >= 0, "calibrate_batches", "must be 0 or more")
        self._require(self.recalibrate_batches >= 0, "recalibrate_batches", "must be 0 or more")
        self._require(self.budget_offsets >= 0, "budget_offsets", "must be 0 (off) or positive")
        self._require(self.budget_rule == "alternate" or self.budget_offsets > 0, "budget_rule",
                      "'sandwich' needs train.budget_offsets > 0 (the range of its shifted policy)")
        self._require(self.budget_calibration_clips >= 1, "budget_calibration_clips", "must be at least 1")
        self._require(self.gate_lr_mult > 0, "gate_lr_mult", "must be positive")
        self._require(self.lambda_e_warmup_epochs >= 0, "lambda_e_warmup_epochs", "must be 0 or more")
        self._require(self.weight_decay >= 0, "weight_decay", "must be 0 or more")
        self._require(self.grad_clip >= 0, "grad_clip", "must be 0 (off) or positive")
        self._require(self.log_every >= 0, "log_every", "must be 0 (no step lines) or more")
        self._require(self.eval_every >= 1, "eval_every", "must be at least 1")
