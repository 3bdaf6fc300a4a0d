"""The scene-editing pipeline (paper sections 4.3-4.4): iterative relevance-guided dataset updates.

Every ``edit_every`` iterations one training view is updated: its relevance map is computed from the
ORIGINAL capture the first time the view comes up (or for all views up front), the current NeRF renders
RGB and relevance from the view's true camera (index, appearance, pose correction), the render is edited
with relevance guidance (mask = rendered relevance >= tau, start noise ~ U[lo, hi], conditioned on the
original capture, unedited pixels pasted back from the original at full resolution) and written back as
that view's training image. ``mask_threshold = 0`` edits every pixel: Instruct-NeRF2NeRF. On a view's
first visit the relevance field has not been trained on its map yet, so that update uses the fresh 2D map.

Faster than the paper, as options (defaults: the paper): ``crop_to_relevance`` denoises only a window around
each view's relevance mask (``diffusion/crop.py``; a view whose mask is empty keeps its current image) and
``views_per_update`` updates k views per edit event in one batched UNet call.

The datamanager keeps the edit bookkeeping (which view is due, stored images and maps); this pipeline
supplies the renders and drives the editor. The editor (diffusers) is imported and loaded lazily, only
when the first edit happens, so ns-render / ns-viewer / ns-eval never load it.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import torch
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import ViewerSlider, ViewerText
from rich.progress import track
from torch import Tensor

from relevance_nerf2nerf.diffusion.crop import CropSettings
from relevance_nerf2nerf.diffusion.relevance import SCENE_IQR_RATIO, check_iqr_ratio
from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.nerf.checkpoints import (
    allow_numpy_in_checkpoints,
    check_view_count,
    load_base_checkpoint,
    model_state,
    report_keys,
)
from relevance_nerf2nerf.nerf.datamanager import RelevanceDataManager, RelevanceDataManagerConfig
from relevance_nerf2nerf.nerf.export import export_edited_dataset
from relevance_nerf2nerf.nerf.nerfacto_model import RelevanceNerfactoModel, RelevanceNerfactoModelConfig
from relevance_nerf2nerf.nerf.relevance import RELEVANCE

allow_numpy_in_checkpoints()  # ns-render / ns-viewer / ns-eval import this module when loading our configs


@dataclass
class RelevanceNerf2NerfPipelineConfig(VanillaPipelineConfig):
    """Relevance-guided scene editing on top of a (trained) nerfacto."""

    _target: type = field(default_factory=lambda: RelevanceNerf2NerfPipeline)
    datamanager: RelevanceDataManagerConfig = field(default_factory=RelevanceDataManagerConfig)
    model: RelevanceNerfactoModelConfig = field(default_factory=RelevanceNerfactoModelConfig)
    instruction: str = ""
    """Editing instruction, e.g. "turn the bear into a panda" (required)."""
    editor_model: str = "timbrooks/instruct-pix2pix"
    """InstructPix2Pix weights: a hub id or a local diffusers folder."""
    editor_device: str | None = None
    """Device of the editor (default: the training device)."""
    editor_precision: Literal["fp32", "fp16"] = "fp32"
    """Precision of the editor."""
    mask_threshold: float = 0.5
    """tau: pixels with rendered relevance >= tau are edited (0 reproduces Instruct-NeRF2NeRF)."""
    text_guidance: float = 7.5
    """s_T, classifier-free guidance scale of the instruction (eq. 1)."""
    image_guidance: float = 1.5
    """s_I, classifier-free guidance scale of the conditioning image (eq. 1)."""
    t_rel: float = 0.8
    """Noise level (fraction of the schedule) at which relevance maps are computed."""
    relevance_iqr_ratio: float = SCENE_IQR_RATIO
    """Outlier fence r of each view's relevance map, clamped to [Q1 - r IQR, Q3 + r IQR] before normalising.
    The paper's 2D maps use 1.5; the authors' scene code uses 2 (relevance-demo uses 3 with the toy editor:
    README, "Keeping the other objects")."""
    edit_every: int = 10
    """Update one training view every this many iterations."""
    edit_steps: int = 20
    """Denoising steps per view update."""
    edit_noise_range: tuple[float, float] = (0.02, 0.98)
    """The start noise level of each update is drawn uniformly from this range."""
    seed: int = 0
    """Seed of the view order, the start noise levels and the diffusion noise."""
    base_checkpoint: Path | None = None
    """nerfacto / nerfacto-tiny checkpoint (.ckpt or run folder) to start from (fresh relevance head)."""
    relevance_up_front: bool = False
    """Compute every view's relevance map before the first update (default: when a view first comes up)."""
    relevance_warmup_iters: int = 0
    """With relevance_up_front: iterations training only the relevance head before the first update."""
    export_dataset: bool = True
    """Write the edited images and relevance maps as a nerfstudio dataset under the run's folder."""
    crop_to_relevance: bool = False
    """Denoise only the bounding box of the view's mask plus a margin (on the latent grid) and paste it back;
    unmasked pixels stay the original's, and a view whose mask is empty keeps its current image."""
    crop_margin: float = 0.03125
    """With crop_to_relevance: context margin on each side of the mask's box (fraction of the longer side)."""
    crop_min_size: float = 0.25
    """With crop_to_relevance: smallest crop side, a fraction of the image side (IP2P keeps some context)."""
    views_per_update: int = 1
    """Views updated per edit event, denoised together in one batched UNet call (1: the paper)."""
    editor_memory_saving: bool = False
    """Attention slicing, VAE slicing and tiling, text encoder on the CPU: less GPU memory, a bit slower."""

    def crop_settings(self) -> CropSettings | None:
        """The crop of every update (validated), or None when crop_to_relevance is off."""
        if not self.crop_to_relevance:
            return None
        return CropSettings(margin=self.crop_margin, min_size=self.crop_min_size)

    def validate(self) -> None:
        if not self.instruction.strip():
            raise InvalidInputError(
                'no editing instruction: pass --pipeline.instruction "turn the ... into ..."'
            )
        for name in ("mask_threshold", "t_rel"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidInputError(
                    f"--pipeline.{name.replace('_', '-')} must lie in [0, 1], got {getattr(self, name)}"
                )
        low, high = self.edit_noise_range
        if not 0.0 <= low <= high <= 1.0:
            raise InvalidInputError(
                f"--pipeline.edit-noise-range needs 0 <= low <= high <= 1, got {low} {high}"
            )
        if self.edit_every < 1 or self.edit_steps < 1:
            raise InvalidInputError("--pipeline.edit-every and --pipeline.edit-steps must be at least 1")
        if self.text_guidance < 0 or self.image_guidance < 0:
            raise InvalidInputError("guidance scales must be non-negative")
        check_iqr_ratio(self.relevance_iqr_ratio, "--pipeline.relevance-iqr-ratio")
        if self.views_per_update < 1:
            raise InvalidInputError(f"--pipeline.views-per-update must be >= 1, got {self.views_per_update}")
        CropSettings(margin=self.crop_margin, min_size=self.crop_min_size)


class RelevanceNerf2NerfPipeline(VanillaPipeline):
    """VanillaPipeline plus the relevance-guided dataset update schedule."""

    config: RelevanceNerf2NerfPipelineConfig
    datamanager: RelevanceDataManager

    def __init__(self, config: RelevanceNerf2NerfPipelineConfig, device: str, *args: Any, **kwargs: Any):
        config.validate()
        super().__init__(config, device, *args, **kwargs)
        # Viewer controls: read at every update, so a change takes effect on the next edit.
        self.viewer_instruction = ViewerText("Instruction", config.instruction, hint="Editing instruction")
        self.viewer_tau = ViewerSlider("Mask threshold (tau)", config.mask_threshold, 0.0, 1.0, 0.01)
        self.viewer_text_guidance = ViewerSlider("Text guidance (s_T)", config.text_guidance, 0.0, 20.0, 0.5)
        self.viewer_image_guidance = ViewerSlider(
            "Image guidance (s_I)", config.image_guidance, 0.0, 5.0, 0.1
        )
        self.export_dir: Path | None = None

    @property
    def model(self) -> RelevanceNerfactoModel:
        return super().model  # type: ignore[return-value]

    # --- editor --------------------------------------------------------------------------------------
    @property
    def editor_device(self) -> torch.device:
        return (
            torch.device(self.config.editor_device)
            if self.config.editor_device
            else torch.device(self.device)
        )

    @cached_property
    def editor(self):
        """The RelevanceEditor, loaded on first use (diffusers is imported only then).

        Assign an already built editor (anything with the ``relevance`` / ``edit`` methods) to use it instead.
        A ``cached_property`` on purpose: nerfstudio's viewer calls every attribute of the pipeline when it
        looks for controls (``parse_object``) but skips cached properties, so ns-viewer never loads IP2P.
        The editor is a plain attribute, not a submodule: it is never part of a checkpoint.
        """
        from relevance_nerf2nerf.diffusion.editor import load_editor
        from relevance_nerf2nerf.diffusion.ip2p import MemoryOptions

        CONSOLE.print(f"Loading editor {self.config.editor_model} on {self.editor_device}...")
        memory = MemoryOptions.low_memory() if self.config.editor_memory_saving else None
        return load_editor(
            self.config.editor_model,
            device=self.editor_device,
            precision=self.config.editor_precision,
            memory=memory,
        )

    def current_settings(self) -> dict[str, Any]:
        """Instruction and guidance as set in the viewer (defaults: the config), validated."""
        instruction = str(self.viewer_instruction.value).strip()
        tau = float(self.viewer_tau.value)
        if not instruction:
            raise InvalidInputError("the instruction is empty: type one in the viewer's Instruction field")
        if not 0.0 <= tau <= 1.0:
            raise InvalidInputError(f"mask threshold must lie in [0, 1], got {tau}")
        return {
            "instruction": instruction,
            "mask_threshold": tau,
            "text_guidance": float(self.viewer_text_guidance.value),
            "image_guidance": float(self.viewer_image_guidance.value),
        }

    # --- one dataset update --------------------------------------------------------------------------
    def _autocast_off(self) -> ExitStack:
        """Diffusion runs in the editor's own precision, never under the trainer's autocast."""
        stack = ExitStack()
        stack.enter_context(torch.autocast(device_type="cpu", enabled=False))
        if torch.cuda.is_available():
            stack.enter_context(torch.autocast(device_type="cuda", enabled=False))
        return stack

    def _generator(self, ahead: int = 0) -> torch.Generator:
        """CPU generator of the update ``ahead`` updates from now (start noise level, then the editor's
        draws), seeded by update count, so a resumed run draws what an uninterrupted one would."""
        seed = self.config.seed * 1_000_003 + int(self.datamanager.edits_done) + ahead
        return torch.Generator().manual_seed(seed)

    def compute_relevance(self, index: int, generator: torch.Generator | None = None) -> None:
        """Relevance map of the view's ORIGINAL capture (paper 4.1), stored for the relevance field."""
        settings = self.current_settings()
        original = self.datamanager.original_image(index).to(self.editor_device)
        with self._autocast_off():
            result = self.editor.relevance(
                original,
                settings["instruction"],
                t_rel=self.config.t_rel,
                iqr_ratio=self.config.relevance_iqr_ratio,
                generator=generator,
            )
        self.datamanager.set_relevance(index, result.pixel)

    @torch.no_grad()
    def render_view(self, index: int) -> tuple[Tensor, Tensor]:
        """Full-image render of training view ``index`` with its true camera index: appearance embedding
        and pose correction of that view (train-mode field). Returns rgb (1,3,H,W), relevance (1,1,H,W)."""
        cameras = self.datamanager.train_dataset.cameras.to(self.device)
        ray_bundle = cameras.generate_rays(camera_indices=index, keep_shape=True)
        was_training = self.model.training
        self.model.train()
        try:
            outputs = self.model.get_outputs_for_camera_ray_bundle(ray_bundle)
        finally:
            self.model.train(was_training)
        rgb = outputs["rgb"].clamp(0.0, 1.0).permute(2, 0, 1)[None]
        relevance = outputs[RELEVANCE].clamp(0.0, 1.0).permute(2, 0, 1)[None]
        return rgb, relevance

    def edit_view(self, index: int | None = None) -> int:
        """One relevance-guided dataset update (paper 4.3) of view ``index`` (default: the next view due);
        returns the view's dataset index."""
        due = self.datamanager.view_due(self.config.seed) if index is None else index
        return self.edit_views([due])[0]

    def edit_views(self, indices: list[int] | None = None) -> list[int]:
        """One edit event (paper 4.3) over ``indices`` (default: the next ``views_per_update`` views due),
        edited in one batched editor call. Returns the views' dataset indices.

        For view j of the event:
        1. its generator is seeded by the update count + j (what a one-view update at that count uses) and
           draws a start noise level; the event uses the first edited view's level (a batched UNet call
           shares one timestep list), so with one fixed level a batch equals its views updated one by one;
        2. on its first visit, the relevance map of its original capture is computed (eq. 2-3);
        3. the NeRF renders RGB and relevance at its camera (first visit: the fresh 2D map instead);
        4. the renders are edited together (eq. 4-5), conditioned on the originals, unmasked pixels pasted
           from the originals, each view drawing its noise from its own generator;
        5. each result becomes its view's training image.
        With ``crop_to_relevance`` a view whose mask is empty skips 4-5 and keeps its current image (never
        reverting an earlier edit); it still counts as an update, so the schedule moves on.
        """
        settings = self.current_settings()
        datamanager = self.datamanager
        if indices is None:
            seed, k = self.config.seed, self.config.views_per_update
            due = [datamanager.view_due(seed, ahead=j) for j in range(k)]
            indices = list(dict.fromkeys(due))  # a pass boundary may bring a view back: update it once
        generators = [self._generator(ahead=j) for j in range(len(indices))]
        low, high = self.config.edit_noise_range
        levels = [low + (high - low) * float(torch.rand((), generator=g)) for g in generators]
        renders, relevances = [], []
        for index, generator in zip(indices, generators, strict=True):
            first_visit = not datamanager.has_relevance(index)
            if first_visit:
                self.compute_relevance(index, generator)
            rgb, relevance = self.render_view(index)
            if first_visit:  # the relevance field has not seen this view's map yet: use the map itself
                relevance = datamanager.relevance_map(index)
            renders.append(rgb.to(self.editor_device))
            relevances.append(relevance.to(self.editor_device))
        crop = self.config.crop_settings()
        edit = list(range(len(indices)))
        if crop is not None:  # an empty mask leaves nothing to edit: no diffusion at all
            edit = [j for j in edit if bool((relevances[j] >= settings["mask_threshold"]).any())]
        if edit:
            originals = torch.cat([datamanager.original_image(indices[j]) for j in edit])
            originals = originals.to(self.editor_device)
            crop_option = {} if crop is None else {"crop": crop}  # editors without cropping need not know it
            with self._autocast_off():
                result = self.editor.edit(
                    torch.cat([renders[j] for j in edit]),
                    settings["instruction"],
                    condition_image=originals,
                    relevance=torch.cat([relevances[j] for j in edit]),
                    mask_threshold=settings["mask_threshold"],
                    text_guidance=settings["text_guidance"],
                    image_guidance=settings["image_guidance"],
                    num_steps=self.config.edit_steps,
                    start_noise=levels[edit[0]],
                    composite_source=originals,
                    t_rel=self.config.t_rel,
                    generator=[generators[j] for j in edit],
                    **crop_option,
                )
            for row, j in enumerate(edit):
                datamanager.set_edited_image(indices[j], result.image[row : row + 1])
        datamanager.edits_done += len(indices) - len(edit)  # skipped views: the schedule moves on
        if self.export_dir is not None and edit:
            export_edited_dataset(datamanager, self.export_dir, indices=[indices[j] for j in edit])
        return indices

    # --- schedule ------------------------------------------------------------------------------------
    def prepare_relevance(self) -> None:
        """Up-front option: every view's relevance map, then a warm-up of the relevance head alone."""
        missing = [i for i in range(self.datamanager.num_views) if not self.datamanager.has_relevance(i)]
        for index in track(missing, description="relevance maps of the captures", transient=True):
            self.compute_relevance(index, self._generator())
        if self.config.relevance_warmup_iters > 0:
            self.warm_up_relevance(self.config.relevance_warmup_iters)

    def warm_up_relevance(self, num_iters: int) -> None:
        """Train only the relevance head on the stored maps (Adam on its own parameter group)."""
        params = list(self.model.field.relevance_head.parameters())
        optimizer = torch.optim.Adam(params, lr=1e-2)
        self.model.train()
        for step in track(range(num_iters), description="relevance head warm-up", transient=True):
            ray_bundle, batch = self.datamanager.next_train(step)
            loss = self.model.relevance_loss(self.model(ray_bundle), batch)
            assert loss is not None
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def load_base_checkpoint(self) -> None:
        assert self.config.base_checkpoint is not None
        load_base_checkpoint(self.model, self.config.base_checkpoint, self.datamanager.num_views)

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> list[TrainingCallback]:
        callbacks = super().get_training_callbacks(training_callback_attributes)
        trainer = training_callback_attributes.trainer
        resuming = trainer is not None and (trainer.config.load_dir or trainer.config.load_checkpoint)
        if self.config.base_checkpoint is not None and not resuming:
            self.load_base_checkpoint()
        elif not resuming:
            CONSOLE.print(
                "[yellow]No --pipeline.base-checkpoint or --load-dir: the edit starts from an untrained NeRF "
                "(train nerfacto / nerfacto-tiny first and pass its run folder)"
            )
        if trainer is not None and self.config.export_dataset:
            self.export_dir = Path(trainer.base_dir) / "edited_dataset"
            export_edited_dataset(self.datamanager, self.export_dir)

        def update(step: int) -> None:
            if self.config.relevance_up_front and not bool(self.datamanager.relevance_valid.all()):
                self.prepare_relevance()
            indices = self.edit_views()
            CONSOLE.log(f"step {step}: updated views {indices} ({int(self.datamanager.edits_done)} updates)")

        callbacks.append(
            TrainingCallback(
                where_to_run=[TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                update_every_num_iters=self.config.edit_every,
                func=update,
            )
        )
        return callbacks

    def load_pipeline(self, loaded_state: dict[str, Any], step: int) -> None:
        """Resume (``--load-dir``) or evaluation loading: refuse another scene's checkpoint, report key
        differences (a plain nerfacto checkpoint has no relevance head), then nerfstudio's loading."""
        state = model_state(loaded_state)
        check_view_count(state, len(self.datamanager.train_dataset), "the checkpoint")
        expected = set(self.model.state_dict())
        report_keys(f"checkpoint step {step}", sorted(expected - set(state)), sorted(set(state) - expected))
        super().load_pipeline(loaded_state, step)
