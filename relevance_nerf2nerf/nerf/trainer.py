"""nerfstudio's Trainer with atomic checkpoints, resumed runs that finish their plan, and nerfacto runs
accepted as the base of an edit through ``--load-dir`` (the Instruct-NeRF2NeRF habit).

- **Atomic checkpoints.** nerfstudio 1.1.5 writes ``step-N.ckpt`` in place and ``--load-dir`` (like
  ns-render / ns-viewer) picks the highest step in the folder: a run killed while saving would leave a
  half-written newest checkpoint that every later load fails on. Here the checkpoint is written into a
  staging folder beside ``nerfstudio_models`` (emptied before and after every save, so a torn file a kill
  left there never gets in the way) and moved into place with one rename.
- **Resume finishes the plan.** Every checkpoint stores the run's planned total of iterations. nerfstudio's
  ``--load-dir`` runs ``--max-num-iterations`` MORE steps; a run resumed here ends at the stored total
  (so an edit killed and resumed any number of times ends at its planned step and update count), and the
  progress display counts towards that total. ``--total-iterations`` changes the plan.
- **A base through --load-dir.** Instruct-NeRF2NeRF starts an edit with ``--load-dir <nerfacto run>``. A
  checkpoint without this method's edit state is loaded as ``--pipeline.base-checkpoint`` loads it: the
  weights only, at step 0, with fresh optimizers, schedulers and gradient scaler (nerfstudio would resume the
  base's step and its decayed learning rates), and one line says so.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.decorators import check_main_thread
from nerfstudio.utils.rich_utils import CONSOLE

from relevance_nerf2nerf.diffusion.images import MAX_MEGAPIXELS, check_megapixels
from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.nerf.checkpoints import (
    has_edit_state,
    load_base_checkpoint,
    load_checkpoint_file,
    resolve_checkpoint,
)
from relevance_nerf2nerf.outputs import atomic_write

PLAN_KEY = "relevance_nerf2nerf_plan"
"""Checkpoint entry holding the run's plan: ``{"total_iterations": N}``."""


@dataclass
class RelevanceTrainerConfig(TrainerConfig):
    """TrainerConfig whose trainer saves atomically, resumes to the planned total and takes a base via
    --load-dir."""

    _target: type = field(default_factory=lambda: RelevanceTrainer)
    total_iterations: int | None = None
    """The run ends after this many iterations in all (at step N - 1). Default: --max-num-iterations for a
    new run; for a resumed run (--load-dir / --load-checkpoint of a checkpoint of these methods) the total
    stored in the checkpoint, so the run ends where it was planned to. Set it to change the plan, e.g. to
    continue a finished edit."""
    editor_max_megapixels: float | None = None
    """Size guard of scene editing: training views above this many megapixels are refused at set-up, before
    the editor loads (default: 1 when the editor runs on the CPU, 4 on CUDA); downscale the capture
    (--pipeline.datamanager.dataparser.downscale-factor) or raise this."""


class RelevanceTrainer(Trainer):
    """Trainer with atomic checkpoints, a stored iteration plan and base checkpoints via --load-dir."""

    config: RelevanceTrainerConfig

    def __init__(self, config: RelevanceTrainerConfig, local_rank: int = 0, world_size: int = 1) -> None:
        if config.total_iterations is not None and config.total_iterations < 1:
            raise InvalidInputError(f"--total-iterations must be at least 1, got {config.total_iterations}")
        limit = config.editor_max_megapixels
        if limit is not None and not (math.isfinite(limit) and limit > 0):
            raise InvalidInputError(f"--editor-max-megapixels must be a positive number, got {limit}")
        super().__init__(config, local_rank, world_size)
        self.total_iterations = config.total_iterations or config.max_num_iterations
        # nerfstudio's progress display (set up after the checkpoint is loaded) counts to max_num_iterations
        config.max_num_iterations = self.total_iterations

    def setup(self, *args: Any, **kwargs: Any) -> None:
        super().setup(*args, **kwargs)
        self.check_view_size()

    def check_view_size(self) -> None:
        """Refuse training views too large for the editor's device (one line, before the editor loads)."""
        edited = getattr(getattr(self.pipeline, "datamanager", None), "edited_images", None)
        if edited is None:  # not a scene edit (e.g. nerfacto-tiny)
            return
        device = self.pipeline.editor_device.type
        limit = self.config.editor_max_megapixels or MAX_MEGAPIXELS.get(device, MAX_MEGAPIXELS["cpu"])
        advice = (
            "pass --pipeline.datamanager.dataparser.downscale-factor 2 (or more; {fit} fits), "
            "or raise --editor-max-megapixels"
        )
        check_megapixels(
            int(edited.shape[1]), int(edited.shape[2]), limit, f"a training view on {device}", advice
        )

    # --- loading -------------------------------------------------------------------------------------
    def checkpoint_to_load(self) -> Path | None:
        """The checkpoint ``--load-dir`` (its newest, or ``--load-step``) or ``--load-checkpoint`` names;
        ``--load-dir`` may also be the run folder holding ``nerfstudio_models``."""
        load_dir, load_checkpoint = self.config.load_dir, self.config.load_checkpoint
        if load_dir is None:
            return None if load_checkpoint is None else Path(load_checkpoint)
        if self.config.load_step is None:
            return resolve_checkpoint(load_dir)
        name = f"step-{self.config.load_step:09d}.ckpt"
        inside = Path(load_dir) / "nerfstudio_models" / name
        return inside if inside.is_file() else Path(load_dir) / name

    def _load_checkpoint(self) -> None:
        path = self.checkpoint_to_load()
        if path is None:
            super()._load_checkpoint()
            return
        if not path.is_file():
            raise InvalidInputError(f"checkpoint {path} does not exist: check --load-dir / --load-step")
        loaded = load_checkpoint_file(path)
        datamanager = getattr(self.pipeline, "datamanager", None)
        if hasattr(datamanager, "edits_done") and not has_edit_state(loaded["pipeline"]):
            base_checkpoint = getattr(self.pipeline.config, "base_checkpoint", None)
            ignored = " (--pipeline.base-checkpoint ignored)" if base_checkpoint else ""
            CONSOLE.print(
                f"[bold yellow]{path} holds no edit state: starting a new edit from its weights{ignored} at "
                "step 0 with fresh optimizers and schedulers, as --pipeline.base-checkpoint does"
            )
            load_base_checkpoint(self.pipeline.model, path, datamanager.num_views)
            return
        self.config.load_dir, self.config.load_checkpoint = None, path  # nerfstudio loads exactly this file
        super()._load_checkpoint()
        stored = loaded.get(PLAN_KEY, {}).get("total_iterations")
        self.total_iterations = self.config.total_iterations or stored or self.config.max_num_iterations
        self.config.max_num_iterations = self.total_iterations
        CONSOLE.print(
            f"Resuming at step {self._start_step} of {self.total_iterations} "
            f"({max(0, self.total_iterations - self._start_step)} to go"
            f"{'' if self.config.total_iterations else ', the total planned when the run started'})"
        )

    def train(self) -> None:
        """Train from the start step up to ``total_iterations`` (nerfstudio runs max_num_iterations more)."""
        remaining = self.total_iterations - self._start_step
        if remaining <= 0:
            CONSOLE.print(
                f"[bold yellow]The run already reached its planned {self.total_iterations} iterations: "
                "nothing to train (pass --total-iterations to continue it)"
            )
            return
        max_num_iterations = self.config.max_num_iterations
        self.config.max_num_iterations = remaining  # nerfstudio's loop runs this many steps from the start
        try:
            super().train()
        finally:
            self.config.max_num_iterations = max_num_iterations

    # --- saving --------------------------------------------------------------------------------------
    @check_main_thread
    def save_checkpoint(self, step: int) -> None:
        checkpoint_dir = self.checkpoint_dir
        staging = checkpoint_dir.with_name(f".{checkpoint_dir.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)  # a torn file from a killed save
        staging.mkdir(parents=True)
        name = f"step-{step:09d}.ckpt"
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline  # DDP
        state = {  # nerfstudio's checkpoint, plus the plan
            "step": step,
            "pipeline": pipeline.state_dict(),
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.optimizers.schedulers.items()},
            "scalers": self.grad_scaler.state_dict(),
            PLAN_KEY: {"total_iterations": self.total_iterations},
        }
        try:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(checkpoint_dir / name, lambda temporary: torch.save(state, temporary), staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if self.config.save_only_latest_checkpoint:
            for old in checkpoint_dir.glob("*.ckpt"):
                if old.name != name:
                    old.unlink()
