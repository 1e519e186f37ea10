"""The training step and epoch loop on the debug preset: learning, gates, lambda_e, exact resume."""

import dataclasses

import pytest
import torch

from pipeline.config import apply_overrides, get_preset
from pipeline.models import build_model
from pipeline.train.checkpoint import load_checkpoint, save_checkpoint
from pipeline.train.loop import train_epochs
from pipeline.train.optim import build_optimizer, lambda_e_at
from pipeline.train.step import train_step


def debug_cfg(*overrides):
    return apply_overrides(get_preset("debug"), ["model.num_classes=2", *overrides])


def learnable_clips(n: int, cfg, seed: int):
    """Class 0: static noise clip; class 1: the same noise moving in time. (B, C, T, H, W)."""
    g = torch.Generator().manual_seed(seed)
    t, s = cfg.data.num_frames, cfg.data.crop_size
    base = torch.randn(n, 3, 1, s, s, generator=g).repeat(1, 1, t, 1, 1)
    labels = torch.arange(n) % 2
    for i in range(n):
        if labels[i] == 1:
            for k in range(t):
                base[i, :, k] = torch.roll(base[i, :, k], shifts=3 * k, dims=-1)
    return base, labels


def batches_for(cfg, num_batches: int):
    def train_batches(epoch: int):
        for b in range(num_batches):
            yield learnable_clips(cfg.data.batch_size, cfg, seed=1000 * epoch + b)
    return train_batches


def test_loss_decreases_on_the_debug_preset():
    cfg = debug_cfg("train.lambda_e=0.0", "train.lr=0.003")
    torch.manual_seed(0)
    model = build_model(cfg.model)
    opt = build_optimizer(model, cfg.train)
    clips, labels = learnable_clips(8, cfg, seed=0)
    first = train_step(model, clips, labels, opt, lambda_e=0.0).loss
    for _ in range(15):
        last = train_step(model, clips, labels, opt, lambda_e=0.0).loss
    assert last < 0.7 * first


def test_gates_and_cheap_ops_receive_gradients_in_a_train_step():
    cfg = debug_cfg()
    torch.manual_seed(0)
    model = build_model(cfg.model)
    opt = build_optimizer(model, cfg.train)
    clips, labels = learnable_clips(4, cfg, seed=0)
    train_step(model, clips, labels, opt, lambda_e=1.0)
    names = [n for n, p in model.named_parameters() if ".gate." in n or "cheap" in n]
    assert names, "the debug model has no gates"
    for name, param in model.named_parameters():
        if name in names:
            assert param.grad is not None and torch.isfinite(param.grad).all(), name


def _gflops_after_training(lambda_e: float) -> float:
    cfg = debug_cfg("train.lr=0.01", f"train.lambda_e={lambda_e}")
    torch.manual_seed(0)
    model = build_model(cfg.model)
    opt = build_optimizer(model, cfg.train)
    clips, labels = learnable_clips(8, cfg, seed=0)
    for _ in range(20):
        result = train_step(model, clips, labels, opt, lambda_e=lambda_e, lambda_d=cfg.train.lambda_d)
    return result.macs_sum / result.count


def test_gflops_fall_monotonically_as_lambda_e_rises():
    """Three values, same seed and data: the efficiency weight orders the cost (the accuracy study
    shows the same on trained models: benchmarks/RESULTS.md section 7)."""
    costs = [_gflops_after_training(lam) for lam in (0.0, 5.0, 20.0)]
    assert costs[0] > costs[1] > costs[2], costs


def test_lambda_e_zero_leaves_cost_free_to_stay_high():
    cfg = debug_cfg()
    torch.manual_seed(0)
    full = float(build_model(cfg.model).eval().forward(learnable_clips(2, cfg, 0)[0]).macs.max())
    free = _gflops_after_training(0.0)
    pushed = _gflops_after_training(20.0)
    assert free > 0.9 * full  # without L_e only the distortion term acts, and it favours full compute
    assert pushed < free  # the efficiency loss does


def test_lambda_e_warm_up_ramps_linearly():
    tcfg = dataclasses.replace(get_preset("debug").train, lambda_e=2.0, lambda_e_warmup_epochs=2)
    assert lambda_e_at(tcfg, 0) == 0.0
    assert lambda_e_at(tcfg, 1) == pytest.approx(1.0)
    assert lambda_e_at(tcfg, 5) == pytest.approx(2.0)


class Stopped(Exception):
    pass


def _run(cfg, tmp_path, resume=None, logs=None, stop_after=None):
    torch.manual_seed(0)
    model = build_model(cfg.model)

    def on_epoch_end(report):
        save_checkpoint(tmp_path / f"epoch{report.epoch}", model=report.model,
                        optimizer=report.optimizer, scheduler=report.scheduler, epoch=report.epoch,
                        step=report.step, config={}, metrics=report.metrics)
        if report.epoch == stop_after:
            raise Stopped  # the job is killed right after its checkpoint

    metrics = train_epochs(cfg, model=model, train_batches=batches_for(cfg, 3), steps_per_epoch=3,
                           on_epoch_end=on_epoch_end, resume_state=resume,
                           log=(logs.append if logs is not None else lambda s: None))
    return model, metrics


def test_resume_continues_from_the_saved_epoch_and_matches_an_uninterrupted_run(tmp_path):
    cfg = debug_cfg("train.epochs=3", "train.lambda_e=0.5")
    straight, straight_metrics = _run(cfg, tmp_path / "a")
    # Stop after the first epoch, then resume the 3-epoch run from that checkpoint.
    with pytest.raises(Stopped):
        _run(cfg, tmp_path / "b", stop_after=0)
    state = load_checkpoint(tmp_path / "b" / "epoch0")
    assert state["epoch"] == 0 and state["step"] == 3
    logs: list[str] = []
    resumed, resumed_metrics = _run(cfg, tmp_path / "b", resume=state, logs=logs)
    assert any("resuming from epoch 1" in line for line in logs)
    assert not any(line.startswith("epoch 1/") for line in logs)  # epoch 1 was not redone
    assert resumed_metrics["step"] == straight_metrics["step"] == 9
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_gates_are_frozen_for_the_last_fraction_of_the_epochs_while_the_rest_trains():
    cfg = debug_cfg("train.epochs=3", "train.gate_freeze_fraction=0.34", "train.lr=0.01", "train.lambda_e=2.0")
    torch.manual_seed(0)
    model = build_model(cfg.model)
    snapshots = []

    def on_epoch_end(report):
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters()})

    train_epochs(cfg, model=model, train_batches=batches_for(cfg, 3), steps_per_epoch=3,
                 on_epoch_end=on_epoch_end, log=lambda line: None)
    gates = [n for n in snapshots[0] if ".gate." in n]
    others = [n for n in snapshots[0] if ".gate." not in n]
    assert gates and others
    moved = lambda a, b, names: any(not torch.equal(a[n], b[n]) for n in names)  # noqa: E731
    assert moved(snapshots[0], snapshots[1], gates)  # epoch 2 still trains the gates
    assert not moved(snapshots[1], snapshots[2], gates)  # epoch 3 (the last third) does not
    assert moved(snapshots[1], snapshots[2], others)  # but the network keeps training


def test_training_across_budgets_runs_shifted_policies_in_the_frozen_epochs_only():
    """train.budget_offsets: every other step of the frozen-gate epochs runs a shifted policy (the
    same offsets after a resume: a function of seed and step); the other epochs, and the model after
    training, run the trained policy (offset 0)."""
    from pipeline.models.convert import dynamic_layers
    from pipeline.train.loop import _budget_offset

    cfg = debug_cfg("train.epochs=4", "train.gate_freeze_fraction=0.75", "train.budget_offsets=6")
    offsets = [_budget_offset(cfg.train, s) for s in range(40)]
    assert offsets == [_budget_offset(cfg.train, s) for s in range(40)]
    assert all(o == 0 for o in offsets[::2]) and all(0 < abs(o) <= 6 for o in offsets[1::2])
    assert min(offsets) < -1 and max(offsets) > 1

    torch.manual_seed(0)
    model = build_model(cfg.model)
    layer = dynamic_layers(model)[0][1]
    seen = []  # (epoch, offset, mean channel index chosen) per training forward of the first layer
    epoch_of = {"now": 0}

    def hook(module, inputs, output):
        if module.training:
            seen.append((epoch_of["now"], module.budget_offset, float(module.record.channel_index.float().mean())))

    layer.register_forward_hook(hook)

    def on_epoch_end(report):
        epoch_of["now"] = report.epoch + 1

    train_epochs(cfg, model=model, train_batches=batches_for(cfg, 4), steps_per_epoch=4,
                 on_epoch_end=on_epoch_end, log=lambda line: None)
    assert all(off == 0 for e, off, _ in seen if e == 0)  # gates still training: the trained policy
    frozen = [(off, ci) for e, off, ci in seen if e >= 1]  # epochs 2-4, steps 4-15
    assert [off for off, _ in frozen] == [_budget_offset(cfg.train, s) for s in range(4, 16)]
    assert any(off > 3 for off, _ in frozen) and any(off < -3 for off, _ in frozen)
    # a large positive offset picks the cheaper channel option for every clip, a large negative one full
    assert all(ci == 1.0 for off, ci in frozen if off > 3) and all(ci == 0.0 for off, ci in frozen if off < -3)
    assert all(layer.budget_offset == 0 for _, layer in dynamic_layers(model))


def test_training_across_budgets_in_every_epoch_shifts_the_gate_learning_epochs_too():
    """train.budget_offsets_epochs=all: the shifted steps start in the first epoch, gates still
    learning; the model after training runs its trained policy."""
    from pipeline.models.convert import dynamic_layers
    from pipeline.train.loop import _budget_offset

    cfg = debug_cfg("train.epochs=2", "train.gate_freeze_fraction=0.5", "train.budget_offsets=6",
                    "train.budget_offsets_epochs=all")
    torch.manual_seed(0)
    model = build_model(cfg.model)
    layer = dynamic_layers(model)[0][1]
    seen = []
    layer.register_forward_hook(lambda m, i, o: seen.append(m.budget_offset) if m.training else None)
    train_epochs(cfg, model=model, train_batches=batches_for(cfg, 4), steps_per_epoch=4, log=lambda line: None)
    assert seen == [_budget_offset(cfg.train, s) for s in range(8)]
    assert any(off != 0 for off in seen[:4])  # the first epoch (gates learning) is shifted too
    assert all(layer.budget_offset == 0 for _, layer in dynamic_layers(model))
    with pytest.raises(ValueError, match="frozen"):
        debug_cfg("train.budget_offsets_epochs=some")


def _grads_and_norms_after_one_step(model, clips, labels, cfg, sandwich):
    opt = build_optimizer(model, cfg.train)
    lr = [g["lr"] for g in opt.param_groups]
    for g in opt.param_groups:
        g["lr"] = 0.0  # keep the weights, read the gradients
    train_step(model, clips, labels, opt, lambda_e=1.0, lambda_d=cfg.train.lambda_d, sandwich_offsets=sandwich)
    assert lr  # (the optimiser had groups to silence)
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    norms = {n: b.clone() for n, b in model.named_buffers() if "running" in n}
    return grads, norms


def test_the_sandwich_rule_trains_the_weights_at_full_cheapest_and_shifted_policies_and_leaves_gates_and_statistics_alone():
    """train_step(sandwich_offsets=...): the backbone gets the gradients of three more policies; the
    gates keep those of the trained policy's pass, and no BatchNorm running statistic (backbone or
    gate) moves in the extra passes; the model is back on its trained policy afterwards."""
    import copy

    from pipeline.models.convert import dynamic_layers

    cfg = debug_cfg()
    torch.manual_seed(0)
    base = build_model(cfg.model)
    clips, labels = learnable_clips(4, cfg, seed=0)
    plain, sandwich = copy.deepcopy(base), copy.deepcopy(base)
    seen = []
    dynamic_layers(sandwich)[0][1].register_forward_hook(
        lambda m, i, o: seen.append((m.forced, m.budget_offset, float(m.record.channel_index.float().mean()))))
    g0, n0 = _grads_and_norms_after_one_step(plain, clips, labels, cfg, None)
    g1, n1 = _grads_and_norms_after_one_step(sandwich, clips, labels, cfg, [-5.0])
    assert [(f, o) for f, o, _ in seen] == [(None, 0.0), ((0, 0), 0.0), ((1, 1), 0.0), (None, -5.0)]
    assert seen[1][2] == 0.0 and seen[2][2] == 1.0  # full, then cheapest channel option
    gates = [n for n in g0 if ".gate." in n]
    assert gates
    for n in gates:
        assert (g0[n] is None) == (g1[n] is None), n
        assert g0[n] is None or torch.equal(g0[n], g1[n]), n
    others = [n for n in g0 if ".gate." not in n and g0[n] is not None]
    assert any(not torch.allclose(g0[n], g1[n]) for n in others)
    assert all(torch.isfinite(g1[n]).all() for n in others)
    assert n0.keys() == n1.keys() and all(torch.equal(n0[k], n1[k]) for k in n0)
    assert all(layer.forced is None and layer.budget_offset == 0 for _, layer in dynamic_layers(sandwich))
    momenta = {m.momentum for m in sandwich.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    assert 0.0 not in momenta


def test_the_sandwich_rule_runs_every_step_of_the_chosen_epochs_and_needs_a_range():
    from pipeline.models.convert import dynamic_layers
    from pipeline.train.loop import _budget_offset

    cfg = debug_cfg("train.epochs=2", "train.gate_freeze_fraction=0.5", "train.budget_offsets=6",
                    "train.budget_rule=sandwich")
    torch.manual_seed(0)
    model = build_model(cfg.model)
    seen = []
    dynamic_layers(model)[0][1].register_forward_hook(
        lambda m, i, o: seen.append((m.forced, m.budget_offset)) if m.training else None)
    train_epochs(cfg, model=model, train_batches=batches_for(cfg, 3), steps_per_epoch=3, log=lambda line: None)
    assert seen[:3] == [(None, 0.0)] * 3  # epoch 1 (gates learning): the trained policy only
    assert seen[3:] == [p for s in range(3, 6)
                        for p in [(None, 0.0), ((0, 0), 0.0), ((1, 1), 0.0), (None, _budget_offset(cfg.train, 2 * s + 1))]]
    assert all(off != 0 for _, off in seen[6::4])
    with pytest.raises(ValueError, match="budget_offsets"):
        debug_cfg("train.budget_rule=sandwich")
    with pytest.raises(ValueError, match="alternate"):
        debug_cfg("train.budget_rule=every", "train.budget_offsets=2")
