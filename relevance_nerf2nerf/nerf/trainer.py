"""nerfstudio's Trainer with checkpoints written atomically, so a killed run always resumes.

nerfstudio 1.1.5 writes ``step-N.ckpt`` in place and ``--load-dir`` (like ns-render / ns-viewer) picks the
highest step in the folder: a run killed while saving leaves a half-written newest checkpoint that every
later load fails on. Here the checkpoint is written into a staging folder beside ``nerfstudio_models`` and
moved into place with one rename, so the folder only ever holds complete checkpoints and a kill loses at
most the work since the last save.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.decorators import check_main_thread


@dataclass
class RelevanceTrainerConfig(TrainerConfig):
    """TrainerConfig whose trainer saves checkpoints atomically."""

    _target: type = field(default_factory=lambda: RelevanceTrainer)


class RelevanceTrainer(Trainer):
    """Trainer whose ``save_checkpoint`` is atomic (write to a staging folder, then rename)."""

    @check_main_thread
    def save_checkpoint(self, step: int) -> None:
        checkpoint_dir = self.checkpoint_dir
        self.checkpoint_dir = checkpoint_dir.with_name(f".{checkpoint_dir.name}.partial")
        try:
            super().save_checkpoint(step)  # writes the staging folder (and clears older files there)
        finally:
            staging, self.checkpoint_dir = self.checkpoint_dir, checkpoint_dir
        name = f"step-{step:09d}.ckpt"
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, checkpoint_dir / name)  # atomic on one file system
        staging.rmdir()
        if self.config.save_only_latest_checkpoint:
            for old in checkpoint_dir.glob("*.ckpt"):
                if old.name != name:
                    old.unlink()
