"""The scene-editing pipeline (paper sections 4.3-4.4): iterative relevance-guided dataset updates.

Every ``edit_every`` iterations one training view is updated: its relevance map is computed from the
ORIGINAL capture the first time the view comes up (or for all views up front), the current scene model renders
RGB and relevance from the view's true camera (index, appearance, pose correction), the render is edited
with relevance guidance (mask = rendered relevance >= tau, start noise ~ U[lo, hi], conditioned on the
original capture, unedited pixels pasted back from the original at full resolution) and written back as
that view's training image. ``mask_threshold = 0`` edits every pixel: Instruct-NeRF2NeRF. On a view's first
update of an edit the relevance field has not been trained on its map (unless a warm-up did so), so that
update's mask comes from the fresh 2D map. A view whose mask is empty keeps its current image.

A changed instruction (the viewer's *Instruction* field, or a run resumed with another
``--pipeline.instruction``) starts a new edit of the capture: every view's image goes back to its capture,
its relevance map is recomputed from the original for the new instruction when it next comes up, the
relevance field is reset, and each view's next update edits its capture; one line says so.

Faster than the paper, as options (defaults: the paper): ``crop_to_relevance`` denoises only a window around
each view's relevance mask (``diffusion/crop.py``) and ``views_per_update`` updates k views per edit event
in one batched UNet call (visiting what k = 1 visits, in the same order, with the same per-view draws).

The datamanager keeps the edit bookkeeping (which view is due, stored images and maps); this pipeline
supplies the renders and drives the editor. The core (``relevance_nerf2nerf.diffusion``) is imported at
module level; only diffusers (with the editor's weights) is imported and loaded lazily, when the first
edit happens, so ns-render / ns-viewer / ns-eval never load it.
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
from relevance_nerf2nerf.diffusion.ip2p import DEFAULT_MODEL
from relevance_nerf2nerf.diffusion.relevance import SCENE_IQR_RATIO
from relevance_nerf2nerf.diffusion.settings import DEFAULTS, EditSettings, check_editor_model
from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.nerf.checkpoints import (
    allow_numpy_in_checkpoints,
    check_view_count,
    load_base_checkpoint,
    model_state,
    report_keys,
)
from relevance_nerf2nerf.nerf.datamanager import RelevanceDataManager, RelevanceDataManagerConfig
from relevance_nerf2nerf.nerf.edit_state import instruction_key
from relevance_nerf2nerf.nerf.export import export_edited_dataset
from relevance_nerf2nerf.nerf.nerfacto_model import RelevanceNerfactoModel, RelevanceNerfactoModelConfig
from relevance_nerf2nerf.nerf.regions import check_region_settings, editor_inputs, training_regions
from relevance_nerf2nerf.nerf.relevance import RELEVANCE, RELEVANCE_PARAM_GROUP
from relevance_nerf2nerf.nerf.sequence import check_edit_base

allow_numpy_in_checkpoints()  # ns-render / ns-viewer / ns-eval import this module when loading our configs


@dataclass
class RelevanceNerf2NerfPipelineConfig(VanillaPipelineConfig):
    """Relevance-guided scene editing on top of a (trained) nerfacto."""

    _target: type = field(default_factory=lambda: RelevanceNerf2NerfPipeline)
    datamanager: RelevanceDataManagerConfig = field(default_factory=RelevanceDataManagerConfig)
    model: RelevanceNerfactoModelConfig = field(default_factory=RelevanceNerfactoModelConfig)
    instruction: str = ""
    """Editing instruction, e.g. "turn the bear into a panda" (required)."""
    editor_model: str = DEFAULT_MODEL
    """InstructPix2Pix weights: a hub id or a local diffusers folder (checked at set-up: a folder must hold
    model_index.json; offline, a hub id must be in the local cache)."""
    editor_device: str | None = None
    """Device of the editor (default: the training device)."""
    editor_precision: Literal["fp32", "fp16"] = "fp32"
    """Precision of the editor."""
    mask_threshold: float = DEFAULTS.mask_threshold
    """tau in [0, 1]: pixels with rendered relevance >= tau are edited (0 reproduces Instruct-NeRF2NeRF)."""
    text_guidance: float = DEFAULTS.text_guidance
    """s_T, classifier-free guidance scale of the instruction (eq. 1), in [0, 100]."""
    image_guidance: float = DEFAULTS.image_guidance
    """s_I, classifier-free guidance scale of the conditioning image (eq. 1), in [0, 100]."""
    t_rel: float = DEFAULTS.t_rel
    """Noise level in (0, 1] (fraction of the schedule) at which relevance maps are computed."""
    relevance_iqr_ratio: float | None = None
    """Outlier fence r of each view's relevance map, clamped to [Q1 - r IQR, Q3 + r IQR] before normalising.
    Default: the ratio the editor's folder recommends (its relevance_settings.json: 3.5 for the bundled toy
    editor), else 2 (the authors' scene code; the paper's 2D maps use 1.5)."""
    edit_every: int = 10
    """Update one training view every this many iterations."""
    edit_steps: int = 20
    """Denoising steps per view update."""
    edit_noise_range: tuple[float, float] = (0.02, 0.98)
    """The start noise level of each update is drawn uniformly from this range (0 <= low <= high <= 1)."""
    seed: int = 0
    """Seed of the view order, the start noise levels and the diffusion noise."""
    base_checkpoint: Path | None = None
    """nerfacto / nerfacto-tiny checkpoint (.ckpt or run folder) to start from (fresh relevance head)."""
    relevance_up_front: bool = False
    """Compute every view's relevance map before the first update (default: when a view first comes up).
    Without a warm-up, each view's first update still takes its mask from its 2D map (the relevance head
    has not been trained yet)."""
    relevance_warmup_iters: int = 0
    """With relevance_up_front: iterations training only the relevance head before the first update; with a
    warm-up, first updates take their masks from the warmed-up head."""
    export_dataset: bool = True
    """Write the edited images and relevance maps as a nerfstudio dataset under the run's folder."""
    crop_to_relevance: bool = False
    """Denoise only the bounding box of the view's mask plus a margin (on the latent grid) and paste it back;
    unmasked pixels stay the original's (a view whose mask is empty keeps its current image, cropped or
    not)."""
    crop_margin: float = 0.03125
    """With crop_to_relevance: context margin on each side of the mask's box (fraction of the longer side)."""
    crop_min_size: float = 0.25
    """With crop_to_relevance: smallest crop side, a fraction of the image side (IP2P keeps some context)."""
    views_per_update: int = 1
    """Views updated per edit event, denoised together in one batched UNet call (1: the paper). An event
    never crosses the end of a pass (the views due until the pass ends), so every view is updated once per
    pass, in the order k = 1 visits them."""
    editor_memory_saving: bool = False
    """Attention slicing, VAE slicing and tiling, text encoder on the CPU: less GPU memory, a bit slower."""
    region_masks: Path | None = None
    """Folder with one mask image per training view, named like the view's image (white = may change, the
    size of the training images): the edit changes nothing outside it (nerf/regions.py)."""
    region_box: tuple[float, float, float, float, float, float] | None = None
    """x_min y_min z_min x_max y_max z_max: an axis-aligned box in the coordinates of the capture's
    transforms.json; each view's region is the box's silhouette in that view."""
    region_mode: Literal["intersect", "replace"] = "intersect"
    """With a region: 'intersect' edits where relevance >= tau within the region, 'replace' the whole region
    (relevance is then not used for the mask)."""

    def crop_settings(self) -> CropSettings | None:
        """The crop of every update (validated), or None when crop_to_relevance is off."""
        if not self.crop_to_relevance:
            return None
        return CropSettings(margin=self.crop_margin, min_size=self.crop_min_size)

    def edit_settings(self) -> EditSettings:
        """The config's edit settings as the one settings object (not validated)."""
        return EditSettings(
            instruction=self.instruction,
            mask_threshold=self.mask_threshold,
            text_guidance=self.text_guidance,
            image_guidance=self.image_guidance,
            num_steps=self.edit_steps,
            t_rel=self.t_rel,
            iqr_ratio=DEFAULTS.iqr_ratio if self.relevance_iqr_ratio is None else self.relevance_iqr_ratio,
            noise_range=self.edit_noise_range,
        )

    def validate(self, flags: dict[str, str] | None = None) -> None:
        """Check every setting (:meth:`EditSettings.validate`, crop and schedule options); one line naming the
        flag, before anything loads.

        Args:
            flags (dict[str, str] | None, default None): flag names the user typed instead of ours, by
                settings field (e.g. Instruct-NeRF2NeRF's ``--pipeline.lower-bound`` for
                ``noise_range_low``).
        """
        names = {name: f"--pipeline.{name.replace('_', '-')}" for name in PIPELINE_FLAGS}
        names.update(
            num_steps="--pipeline.edit-steps",
            iqr_ratio="--pipeline.relevance-iqr-ratio",
            noise_range="--pipeline.edit-noise-range",
        )
        self.edit_settings().validate({**names, **(flags or {})})
        if self.edit_every < 1:
            raise InvalidInputError(f"--pipeline.edit-every must be at least 1, got {self.edit_every}")
        if self.views_per_update < 1:
            raise InvalidInputError(f"--pipeline.views-per-update must be >= 1, got {self.views_per_update}")
        if self.relevance_warmup_iters < 0:
            raise InvalidInputError(
                f"--pipeline.relevance-warmup-iters must be >= 0, got {self.relevance_warmup_iters}"
            )
        CropSettings(margin=self.crop_margin, min_size=self.crop_min_size)
        check_region_settings(self.region_masks, self.region_box, self.region_mode)

    def check_setup(self) -> None:
        """Set-up checks of ``ns-train`` before it writes the run folder: :meth:`validate`, then the editor
        reference (a folder must hold model_index.json; offline, a hub id must be cached). The editor's
        weights are not loaded."""
        self.validate()
        check_editor_model(self.editor_model, "--pipeline.editor-model")


PIPELINE_FLAGS = ("instruction", "mask_threshold", "text_guidance", "image_guidance", "t_rel")
"""Settings whose ``--pipeline.`` flag is their own name."""


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
        self.optimizers: Any = None  # the trainer's Optimizers, when training (a new edit resets the head's)

    @property
    def model(self) -> RelevanceNerfactoModel:
        return super().model  # type: ignore[return-value]

    # --- editor --------------------------------------------------------------------------------------
    @property
    def editor_device(self) -> torch.device:
        """The device the editor runs on: ``editor_device`` if set, else the pipeline's."""
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

    @cached_property
    def regions(self) -> Tensor | None:
        """Each training view's user region, (N, 1, H, W) bool by dataset index, or None without one
        (``--pipeline.region-masks`` / ``--pipeline.region-box``, checked when first needed: at set-up)."""
        return training_regions(self.config.region_masks, self.config.region_box, self.datamanager)

    def current_settings(self) -> dict[str, Any]:
        """Instruction and guidance as set in the viewer (defaults: the config), validated."""
        settings = {
            "instruction": str(self.viewer_instruction.value).strip(),
            "mask_threshold": float(self.viewer_tau.value),
            "text_guidance": float(self.viewer_text_guidance.value),
            "image_guidance": float(self.viewer_image_guidance.value),
        }
        names = {
            "instruction": "the instruction in the viewer's Instruction field",
            "mask_threshold": "the viewer's mask threshold",
            "text_guidance": "the viewer's text guidance",
            "image_guidance": "the viewer's image guidance",
        }
        EditSettings(**settings).validate(names)
        return settings

    def relevance_iqr_ratio(self) -> float:
        """--pipeline.relevance-iqr-ratio, else the ratio the editor recommends, else ``SCENE_IQR_RATIO``."""
        if self.config.relevance_iqr_ratio is not None:
            return self.config.relevance_iqr_ratio
        recommended = getattr(self.editor, "recommended", {})
        return float(recommended.get("iqr_ratio", SCENE_IQR_RATIO))

    # --- a changed instruction -----------------------------------------------------------------------
    def follow_instruction(self, instruction: str) -> bool:
        """Start a new edit of the capture when the relevance maps belong to another instruction (changed in
        the viewer, or a run resumed with another ``--pipeline.instruction``); True if it did.

        The datamanager's :meth:`~relevance_nerf2nerf.nerf.edit_state.EditState.restart_edit` puts every view
        back to its capture and drops its map (recomputed from the original when it comes up) and its count;
        the relevance field is reset (its parameters and their optimizer state), so no mask comes from the
        earlier instruction's relevance.

        Args:
            instruction (str): the instruction of the next update.
        """
        datamanager = self.datamanager
        key = instruction_key(instruction)
        stored = int(datamanager.instruction_key)
        datamanager.instruction_key.fill_(key)
        if stored in (0, key):  # the first instruction (or a checkpoint that did not record one)
            return False
        datamanager.restart_edit()
        self.reset_relevance_field()
        if self.export_dir is not None:
            export_edited_dataset(datamanager, self.export_dir)
        CONSOLE.log(
            f'[bold yellow]Instruction changed to "{instruction}": a new edit of the capture starts; every '
            "view's relevance map is recomputed from its original, the relevance field is reset and each "
            "view's next update starts from its capture"
        )
        return True

    def reset_relevance_field(self) -> None:
        """Re-initialise the relevance parameters (``RELEVANCE_PARAM_GROUP``, seeded by ``seed``) and drop
        their optimizer state. A model may provide ``reset_relevance()``; otherwise every module holding only
        relevance parameters runs ``reset_parameters()`` and any other relevance parameter is zeroed."""
        params = self.model.get_param_groups().get(RELEVANCE_PARAM_GROUP, [])
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(self.config.seed)
            reset = getattr(self.model, "reset_relevance", None)
            if callable(reset):
                reset()
            else:
                ids, done = {id(p) for p in params}, set()
                for module in self.model.modules():
                    own = list(module.parameters(recurse=False))
                    if own and hasattr(module, "reset_parameters") and all(id(p) in ids for p in own):
                        module.reset_parameters()
                        done.update(id(p) for p in own)
                for param in params:
                    if id(param) not in done:
                        param.zero_()
        optimizer = None if self.optimizers is None else self.optimizers.optimizers.get(RELEVANCE_PARAM_GROUP)
        if optimizer is not None:
            for param in params:
                optimizer.state.pop(param, None)

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
        """Relevance map of the view's ORIGINAL capture (paper 4.1), stored for the relevance field.

        Args:
            index (int): dataset index of the training view.
            generator (torch.Generator | None, default None): source of the relevance noise.
        """
        settings = self.current_settings()
        original = self.datamanager.original_image(index).to(self.editor_device)
        with self._autocast_off():
            result = self.editor.relevance(
                original,
                settings["instruction"],
                t_rel=self.config.t_rel,
                iqr_ratio=self.relevance_iqr_ratio(),
                generator=generator,
            )
        self.datamanager.set_relevance(index, result.pixel)

    @torch.no_grad()
    def render_view(self, index: int) -> tuple[Tensor, Tensor]:
        """Full-image render of training view ``index`` with its true camera index: appearance embedding
        and pose correction of that view (train-mode field). Returns rgb (1,3,H,W), relevance (1,1,H,W).

        Args:
            index (int): dataset index of the training view.
        """
        render_for_edit = getattr(self.model, "render_for_edit", None)
        if callable(render_for_edit):  # a camera-based model (splatfacto) renders the view itself
            return render_for_edit(self.datamanager.train_dataset.cameras[index : index + 1], index)
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
        returns the view's dataset index.

        Args:
            index (int | None, default None): dataset index of the view; None: the next view due.
        """
        due = self.datamanager.view_due(self.config.seed) if index is None else index
        return self.edit_views([due])[0]

    def views_due(self) -> list[int]:
        """The views of the next edit event: the next ``views_per_update`` views due, but never past the end
        of the current pass, so events visit exactly the views one-view updates visit, in their order, each
        once per pass (an event at a pass's end is smaller)."""
        datamanager, k = self.datamanager, self.config.views_per_update
        left_in_pass = datamanager.num_views - int(datamanager.edits_done) % datamanager.num_views
        return [datamanager.view_due(self.config.seed, ahead=j) for j in range(min(k, left_in_pass))]

    def edit_views(self, indices: list[int] | None = None) -> list[int]:
        """One edit event (paper 4.3) over ``indices`` (default: :meth:`views_due`), edited in one batched
        editor call. Returns the views' dataset indices.

        For view j of the event:
        1. its generator is seeded by the update count + j (what a one-view update at that count uses) and
           draws a start noise level; the event uses the first edited view's level (a batched UNet call
           shares one timestep list), so with one fixed level a batch equals its views updated one by one;
        2-3. its relevance map, render and mask are gathered (:meth:`_gather_editor_inputs`);
        4-5. the views are edited together and each result becomes its view's training image
           (:meth:`_edit_batch`).
        A view whose mask is empty (cropped or not) skips 4-5 and keeps its current image (never reverting an
        earlier edit); it still counts as an update, so the schedule moves on.

        Args:
            indices (list[int] | None, default None): dataset indices; None: the views due
                (:meth:`views_due`).
        """
        settings = self.current_settings()
        self.follow_instruction(settings["instruction"])
        indices = self.views_due() if indices is None else indices
        generators = [self._generator(ahead=j) for j in range(len(indices))]
        low, high = self.config.edit_noise_range
        levels = [low + (high - low) * float(torch.rand((), generator=g)) for g in generators]
        renders, relevances, regions = self._gather_editor_inputs(indices, generators)
        edited = self._edit_batch(indices, generators, levels, renders, relevances, regions, settings)
        self.datamanager.edits_done += len(indices) - len(edited)  # skipped views: the schedule moves on
        if self.export_dir is not None and edited:
            export_edited_dataset(self.datamanager, self.export_dir, indices=edited)
        return indices

    def _gather_editor_inputs(
        self, indices: list[int], generators: list[torch.Generator]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor | None]]:
        """Steps 2-3 of :meth:`edit_views`: each view's image to edit, relevance and region on the editor's
        device, in the order of ``indices``.

        2. when a view has no map (first visit of this edit), the relevance map of its original capture is
           computed (eq. 2-3) with the view's generator;
        3. the scene model renders RGB and relevance at its camera; on the view's first update of this edit
           the mask comes from its 2D map instead (the relevance field has not been trained on it, unless a
           warm-up did), and after an instruction change the update edits its capture, not the render.

        Args:
            indices (list[int]): the event's dataset indices.
            generators (list[torch.Generator]): one generator per view, in the order of ``indices``.
        """
        datamanager = self.datamanager
        warmed_up = self.config.relevance_up_front and self.config.relevance_warmup_iters > 0
        renders, relevances, regions = [], [], []
        for index, generator in zip(indices, generators, strict=True):
            if not datamanager.has_relevance(index):
                self.compute_relevance(index, generator)
            rgb, relevance = self.render_view(index)
            if int(datamanager.edit_counts[index]) == 0 and not warmed_up:
                relevance = datamanager.relevance_map(index)  # the field has not learnt this view's map yet
            if bool(datamanager.from_capture[index]):  # a new edit: the render still shows the earlier one
                rgb = datamanager.original_image(index)
            renders.append(rgb.to(self.editor_device))
            relevance = torch.nan_to_num(relevance, nan=0.0).to(self.editor_device)
            region = None if self.regions is None else self.regions[index : index + 1]
            relevance, region = editor_inputs(relevance, region, self.config.region_mode)
            relevances.append(relevance)
            regions.append(region)
        return renders, relevances, regions

    def _edit_batch(
        self,
        indices: list[int],
        generators: list[torch.Generator],
        levels: list[float],
        renders: list[Tensor],
        relevances: list[Tensor],
        regions: list[Tensor | None],
        settings: dict[str, Any],
    ) -> list[int]:
        """Steps 4-5 of :meth:`edit_views` for the views whose mask is not empty; returns their dataset
        indices (the others keep their current image).

        4. the renders are edited together (eq. 4-5), conditioned on the originals, unmasked pixels pasted
           from the originals, each view drawing its noise from its own generator, all from the start noise
           level of the first edited view;
        5. each result becomes its view's training image.

        Args:
            indices (list[int]): the event's dataset indices.
            generators (list[torch.Generator]): one generator per view.
            levels (list[float]): each view's drawn start noise level.
            renders (list[Tensor]): each view's image to edit (:meth:`_gather_editor_inputs`).
            relevances (list[Tensor]): each view's relevance.
            regions (list[Tensor | None]): each view's region, or None without regions.
            settings (dict[str, Any]): the edit settings now (:meth:`current_settings`).
        """
        datamanager = self.datamanager
        # an empty mask leaves nothing to edit: no diffusion, the view keeps its current image
        masks = [relevances[j] >= settings["mask_threshold"] for j in range(len(indices))]
        masks = [m if r is None else m & (r > 0.5) for m, r in zip(masks, regions, strict=True)]
        edit = [j for j in range(len(indices)) if bool(masks[j].any())]
        crop = self.config.crop_settings()
        if not edit:
            return []
        originals = torch.cat([datamanager.original_image(indices[j]) for j in edit])
        originals = originals.to(self.editor_device)
        crop_option = {} if crop is None else {"crop": crop}  # editors without cropping need not know it
        if self.regions is not None:  # nor editors without regions
            crop_option["region"] = torch.cat([regions[j] for j in edit])
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
            datamanager.from_capture[indices[j]] = False
        return [indices[j] for j in edit]

    # --- schedule ------------------------------------------------------------------------------------
    def prepare_relevance(self) -> None:
        """Up-front option: every view's relevance map, then a warm-up of the relevance head alone."""
        missing = [i for i in range(self.datamanager.num_views) if not self.datamanager.has_relevance(i)]
        for index in track(missing, description="relevance maps of the captures", transient=True):
            self.compute_relevance(index, self._generator())
        if self.config.relevance_warmup_iters > 0:
            self.warm_up_relevance(self.config.relevance_warmup_iters)

    def warm_up_relevance(self, num_iters: int) -> None:
        """Train only the relevance head on the stored maps (Adam on its own parameter group).

        Args:
            num_iters (int): training iterations of the relevance head.
        """
        params = list(self.model.get_param_groups()[RELEVANCE_PARAM_GROUP])
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
        """Load ``base_checkpoint``'s weights into the model (fresh relevance head)."""
        assert self.config.base_checkpoint is not None
        # an edit run as the base: --data must be its export (edits in sequence)
        check_edit_base(self.config.base_checkpoint, self.datamanager)
        load_base_checkpoint(self.model, self.config.base_checkpoint, self.datamanager.num_views)

    def bind_optimizers(self) -> None:
        """After a load, point the trainer's optimizers at the model's parameters (splatfacto's loading
        replaces its Gaussian tensors; a model without ``bind_optimizers`` keeps its own)."""
        bind = getattr(self.model, "bind_optimizers", None)
        if callable(bind) and self.optimizers is not None:
            bind(self.optimizers)

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> list[TrainingCallback]:
        callbacks = super().get_training_callbacks(training_callback_attributes)
        self.optimizers = training_callback_attributes.optimizers
        _ = self.regions  # a bad region is refused at set-up, before the first update
        trainer = training_callback_attributes.trainer
        resuming = trainer is not None and (trainer.config.load_dir or trainer.config.load_checkpoint)
        if self.config.base_checkpoint is not None and not resuming:
            self.load_base_checkpoint()
        elif not resuming:
            CONSOLE.print(
                "[yellow]No --pipeline.base-checkpoint or --load-dir: the edit starts from an untrained NeRF "
                "(train nerfacto / nerfacto-tiny first and pass its run folder)"
            )
        self.bind_optimizers()  # after any load: a resumed checkpoint, a base via --load-dir or the flag
        if trainer is not None and self.config.export_dataset:
            self.export_dir = Path(trainer.base_dir) / "edited_dataset"
            export_edited_dataset(self.datamanager, self.export_dir)

        def update(step: int) -> None:
            self.follow_instruction(self.current_settings()["instruction"])  # before any map is computed
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
