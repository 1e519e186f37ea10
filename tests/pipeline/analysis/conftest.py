"""A tiny debug VA-RED² model trained in-process for a few steps on synthetic clips whose classes
differ in temporal redundancy (frozen, slow, fast, noise), and the evaluation batches it is analysed on."""


import pytest
import torch

from pipeline.config import get_preset
from pipeline.data.contract import Batch
from pipeline.models import build_model, dynamic_layers
from pipeline.train.step import train_step

NUM_CLASSES = 4


def synthetic_clips(num_per_class: int, *, frames: int = 4, size: int = 32, seed: int = 0):
    """(N, 3, T, H, W) normalised-looking clips and (N,) labels: class k moves a random pattern by
    k pixels per frame (k = 3: fresh noise every frame), so later classes are less redundant in time."""
    g = torch.Generator().manual_seed(seed)
    clips, labels = [], []
    for label in range(NUM_CLASSES):
        for _ in range(num_per_class):
            base = torch.randn(3, size, size, generator=g)
            if label == NUM_CLASSES - 1:
                clip = torch.randn(3, frames, size, size, generator=g)
            else:
                clip = torch.stack([base.roll(label * t, dims=2) for t in range(frames)], dim=1)
            clips.append(clip)
            labels.append(label)
    return torch.stack(clips), torch.tensor(labels)


def as_batches(clips, labels, batch_size: int = 4) -> list[Batch]:
    out = []
    for start in range(0, len(labels), batch_size):
        c, l = clips[start:start + batch_size], labels[start:start + batch_size]
        n = len(l)
        out.append(Batch(clips=c, labels=l, keys=[f"clip{start + i:03d}" for i in range(n)],
                         video_index=torch.arange(start, start + n), clip_index=torch.zeros(n, dtype=torch.long),
                         valid=torch.ones(n, dtype=torch.bool)))
    return out


@pytest.fixture(scope="session")
def debug_cfg():
    return get_preset("debug")


@pytest.fixture(scope="session")
def trained(debug_cfg):
    """(model, eval batches): the debug model after 6 training steps (a high learning rate and
    lambda_e = 10 move the gates off their full-compute start), then its gates' last layers given
    large random weights. Where those 6 steps leave the policy depends on the CPU's floating-point
    paths (on one machine every clip ended on the same policy, on others they differed); with the
    random gate weights each clip's choices follow its content on every CPU, so the clips'
    policies differ, which the properties tested here need (they hold for any model)."""
    torch.manual_seed(0)
    model = build_model(debug_cfg.model)
    clips, labels = synthetic_clips(4, frames=debug_cfg.data.num_frames, size=debug_cfg.data.crop_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(6):
        idx = torch.randperm(len(labels), generator=g)[:8]
        train_step(model, clips[idx], labels[idx], optimizer, lambda_e=10.0)
    with torch.no_grad():
        for _, layer in dynamic_layers(model):
            layer.gate.fc2.weight.copy_(torch.randn(layer.gate.fc2.weight.shape, generator=g) * 3.0)
    eval_clips, eval_labels = synthetic_clips(3, frames=debug_cfg.data.num_frames,
                                              size=debug_cfg.data.crop_size, seed=7)
    return model.eval(), as_batches(eval_clips, eval_labels)


@pytest.fixture(scope="session")
def records(trained):
    from pipeline.analysis import collect_policies

    model, batches = trained
    return collect_policies(model, batches, extremes_per_class=2)
