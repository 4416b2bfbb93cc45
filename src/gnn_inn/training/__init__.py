"""Losses, the training loop and checkpoints."""

from __future__ import annotations

from .checkpoint import load_checkpoint, load_trained, save_checkpoint
from .losses import LOSSES, KvsAllLoss, NegativeSamplingLoss, OneVsAllLoss, build_loss
from .trainer import Trainer, seed_everything, trainer_from_config

__all__ = [
    "LOSSES", "KvsAllLoss", "NegativeSamplingLoss", "OneVsAllLoss", "Trainer", "build_loss",
    "load_checkpoint", "load_trained", "save_checkpoint", "seed_everything",
    "trainer_from_config",
]
