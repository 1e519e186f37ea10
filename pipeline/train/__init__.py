"""Pure-PyTorch training pieces: losses (and, later, the training step and evaluation)."""

from pipeline.train.losses import efficiency_loss, total_loss

__all__ = ["efficiency_loss", "total_loss"]
