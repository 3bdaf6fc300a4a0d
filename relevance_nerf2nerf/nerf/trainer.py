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
- **Learning rates span the run.** A scheduler whose ``max_steps`` is None (the edit presets') decays over
  the run's planned total (``--max-num-iterations`` of a new run, the stored plan of a resumed one,
  ``--total-iterations`` when given), so the final rate is the preset's ``lr_final`` whatever the run's
  length; an explicit ``--optimizers.<group>.scheduler.max-steps N`` keeps N. Generic over parameter groups.
- **Refused before anything is written.** ``ns-train`` writes ``config.yml`` before set-up; the config's
  :meth:`RelevanceTrainerConfig.save_config` first runs the pipeline's set-up checks (every edit setting,
  the editor reference) and the trainer's own, and a refused run prints one line, exits with status 2 and
  leaves no run folder.
- **A base through --load-dir.** Instruct-NeRF2NeRF starts an edit with ``--load-dir <nerfacto run>``. A
  checkpoint without this method's edit state is loaded as ``--pipeline.base-checkpoint`` loads it: the
  weights only, at step 0, with fresh optimizers, schedulers and gradient scaler (nerfstudio would resume the
  base's step and its decayed learning rates), and one line says so.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.engine.schedulers import ExponentialDecayScheduler, ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.decorators import check_main_thread
from nerfstudio.utils.rich_utils import CONSOLE
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from relevance_nerf2nerf.diffusion.images import MAX_MEGAPIXELS, check_megapixels
from relevance_nerf2nerf.errors import InvalidInputError, RelevanceError
from relevance_nerf2nerf.nerf.checkpoints import (
    has_edit_state,
    load_base_checkpoint,
    load_checkpoint_file,
    resolve_checkpoint,
)
from relevance_nerf2nerf.nerf.run_folder import check_run_dir, hold_run_dir
from relevance_nerf2nerf.outputs import atomic_write

PLAN_KEY = "relevance_nerf2nerf_plan"
"""Checkpoint entry holding the run's plan: ``{"total_iterations": N}``."""

DOWNSCALE_ADVICE = "nerfstudio-data --downscale-factor {factor}"
"""How to downscale the training views, in the form ``ns-train`` accepts: the dataparser subcommand after
the method's flags (``ns-train relevance-nerf2nerf ... nerfstudio-data --downscale-factor 2``)."""


def refuse_at_setup(error: RelevanceError) -> None:
    """Print ``<program>: error: <message>`` on one line and exit with status 2 (bad input), for refusals
    during ``ns-train``'s set-up (nerfstudio's error hook would exit with 1).

    Args:
        error (RelevanceError): the refusal.
    """
    print(f"{os.path.basename(sys.argv[0]) or 'python'}: error: {error}", file=sys.stderr)
    raise SystemExit(2) from error


def downscale_factor_to_fit(height: int, width: int, max_megapixels: float) -> int:
    """The smallest integer downscale factor that brings a view under ``max_megapixels`` (at least 2).

    Args:
        height (int): view height in pixels.
        width (int): view width in pixels.
        max_megapixels (float): the limit.
    """
    factor = 2
    while (height // factor) * (width // factor) > max_megapixels * 1e6:
        factor += 1
    return factor


class RunLengthDecayScheduler(ExponentialDecayScheduler):
    """nerfstudio's exponential decay; its length must be set (by :class:`RelevanceTrainer`) before use."""

    config: RunLengthDecaySchedulerConfig

    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> LRScheduler:
        """nerfstudio's decay; refused in one line when no run length was set.

        Args:
            optimizer (Optimizer): the parameter group's optimizer.
            lr_init (float): its initial learning rate.
        """
        if self.config.max_steps is None:
            raise RelevanceError(
                "this learning-rate schedule decays over the run's length, which RelevanceTrainer sets: "
                "build the trainer with config.setup() (as ns-train does), or set the scheduler's max_steps"
            )
        return super().get_scheduler(optimizer, lr_init)


@dataclass
class RunLengthDecaySchedulerConfig(ExponentialDecaySchedulerConfig):
    """nerfstudio's exponential decay whose length defaults to the run's planned total of iterations."""

    _target: type = field(default_factory=lambda: RunLengthDecayScheduler)
    max_steps: int | None = None  # type: ignore[assignment]
    """Steps to decay from lr to lr_final over. Default: the run's planned total (--max-num-iterations, a
    resumed run's stored plan, or --total-iterations), so the run ends at lr_final."""


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
    the editor loads (default: 1 when the editor runs on the CPU, 4 on CUDA); downscale the capture (the
    dataparser subcommand after the flags: nerfstudio-data --downscale-factor 2) or raise this."""

    def check_setup(self) -> None:
        """Every set-up check that needs no data or model: the trainer's options and the pipeline's
        ``check_setup`` (edit settings, editor reference), when it has one."""
        if self.total_iterations is not None and self.total_iterations < 1:
            raise InvalidInputError(f"--total-iterations must be at least 1, got {self.total_iterations}")
        limit = self.editor_max_megapixels
        if limit is not None and not (math.isfinite(limit) and limit > 0):
            raise InvalidInputError(f"--editor-max-megapixels must be a positive number, got {limit}")
        for group, settings in self.optimizers.items():
            steps = getattr(settings.get("scheduler"), "max_steps", None)
            if steps is not None and steps < 1:
                raise InvalidInputError(
                    f"--optimizers.{group}.scheduler.max-steps must be at least 1, got {steps}"
                )
        check = getattr(self.pipeline, "check_setup", None)
        if callable(check):
            check()

    def save_config(self) -> None:
        """``ns-train`` calls this before set-up: refuse a bad run (one line, exit status 2) before its run
        folder and config.yml exist."""
        try:
            self.check_setup()
            check_run_dir(self)  # an edit's existing run folder is never overwritten
        except RelevanceError as error:
            refuse_at_setup(error)
        super().save_config()


class RelevanceTrainer(Trainer):
    """Trainer with atomic checkpoints, a stored iteration plan and base checkpoints via --load-dir."""

    config: RelevanceTrainerConfig

    def __init__(self, config: RelevanceTrainerConfig, local_rank: int = 0, world_size: int = 1) -> None:
        if config.total_iterations is not None and config.total_iterations < 1:
            raise InvalidInputError(f"--total-iterations must be at least 1, got {config.total_iterations}")
        limit = config.editor_max_megapixels
        if limit is not None and not (math.isfinite(limit) and limit > 0):
            raise InvalidInputError(f"--editor-max-megapixels must be a positive number, got {limit}")
        self._run_length_schedules: list[ExponentialDecaySchedulerConfig] = []
        super().__init__(config, local_rank, world_size)
        self.total_iterations = config.total_iterations or config.max_num_iterations
        # nerfstudio's progress display (set up after the checkpoint is loaded) counts to max_num_iterations
        config.max_num_iterations = self.total_iterations

    def setup(self, *args: Any, **kwargs: Any) -> None:
        check_run_dir(self.config)  # before anything is written (also when set up from Python)
        hold_run_dir(self.config)
        super().setup(*args, **kwargs)
        self.check_view_size()

    def check_view_size(self) -> None:
        """Refuse training views too large for the editor's device (one line, before the editor loads)."""
        edited = getattr(getattr(self.pipeline, "datamanager", None), "edited_images", None)
        if edited is None:  # not a scene edit (e.g. nerfacto-tiny)
            return
        device = self.pipeline.editor_device.type
        limit = self.config.editor_max_megapixels or MAX_MEGAPIXELS.get(device, MAX_MEGAPIXELS["cpu"])
        height, width = int(edited.shape[1]), int(edited.shape[2])
        factor = downscale_factor_to_fit(height, width, limit)
        advice = (
            f"end the ns-train command with {DOWNSCALE_ADVICE.format(factor=factor)} ({{fit}} fits), "
            "or raise --editor-max-megapixels"
        )
        check_megapixels(height, width, limit, f"a training view on {device}", advice)

    def setup_optimizers(self) -> Optimizers:
        """nerfstudio's optimizers, every scheduler without ``max_steps`` decaying over the planned total."""
        config = copy.deepcopy(self.config.optimizers)  # the run's lengths never leak into the config
        self._run_length_schedules = []
        for settings in config.values():
            scheduler = settings.get("scheduler")
            if scheduler is not None and hasattr(scheduler, "max_steps") and scheduler.max_steps is None:
                self._run_length_schedules.append(scheduler)
        self._span_run_length()
        return Optimizers(config, self.pipeline.get_param_groups())

    def _span_run_length(self) -> None:
        """Make the run-length schedules decay over ``total_iterations`` (their schedulers read it live)."""
        for scheduler in self._run_length_schedules:
            scheduler.max_steps = self.total_iterations

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
        self._span_run_length()
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
