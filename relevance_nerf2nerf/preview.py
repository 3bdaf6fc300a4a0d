"""Relevance preview: what a scene edit would change, and what it would cost, before anything is trained.

The method computes each view's relevance from the capture alone (paper 4.1), so the edit masks of a scene
can be seen before the edit runs. :func:`run_preview` loads a sample of a dataset's views (a nerfstudio
dataset or a folder of images), computes their 2D relevance for one or more instructions with the settings
the scene edit uses (editor, t_rel, IQR ratio), and writes into a new folder that appears whole or not at
all (``outputs.staged_output_dir``):

- ``contact_sheet.png``: per view, the capture, then per instruction its relevance and its masks at each tau;
- ``preview.json``: the settings, per-view mask fractions and the cost estimate with the timings behind it;
- ``preview.md``: the same mask fractions and estimate as markdown tables.

The cost estimate is measured, not assumed: on the sampled views it times the relevance computation and
one view update (the editor's relevance-guided edit with the preset's denoising steps, full frame and
cropped to the relevance mask), and on the preset's own NeRF model it times a training iteration and the
full-view render every update starts with. The full edit then costs (iterations / edit_every) updates, one
relevance map per training view and the iterations themselves.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from relevance_nerf2nerf.diffusion.crop import CropSettings
from relevance_nerf2nerf.diffusion.images import (
    IMAGE_SUFFIXES,
    MAX_MEGAPIXELS,
    check_megapixels,
    image_size,
    load_image,
    mask_to_uint8,
)
from relevance_nerf2nerf.diffusion.ip2p import DEFAULT_MODEL
from relevance_nerf2nerf.diffusion.relevance import SCENE_IQR_RATIO
from relevance_nerf2nerf.diffusion.settings import DEFAULTS, EditSettings, check_editor_model
from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.outputs import check_new_output_dir, staged_output_dir

PRESETS = ("relevance-nerf2nerf", "relevance-nerf2nerf-small", "relevance-nerf2nerf-tiny")
"""Scene-editing presets (nerfstudio method names) whose schedule and NeRF the estimate uses."""
MAX_AUTO_RESOLUTION = 1600
"""nerfstudio's automatic downscale: the largest image side its dataparser loads without a factor."""
TRAIN_SPLIT_FRACTION = 0.9
"""nerfstudio's default share of a dataset's frames used for training (the views an edit updates)."""
SHEET_VIEW_SIDE = 160
"""Longest side of one view in the contact sheet, in pixels (views are scaled to it)."""


@dataclass
class PreviewSettings:
    """What to preview and how: the scene edit's relevance settings, its preset and its length."""

    data: Path
    """A nerfstudio dataset (a folder with transforms.json, e.g. ns-process-data output, or an edit's
    edited_dataset) or a folder of images."""
    instruction: tuple[str, ...]
    """One or more edit instructions, previewed side by side on the same views."""
    output_dir: Path
    """New folder for the outputs (must not exist or be empty); it appears whole or not at all."""
    num_views: int | Literal["all"] = 6
    """Number of views, spread evenly over the dataset (first and last included), or "all"."""
    taus: tuple[float, ...] = (0.3, 0.5, 0.7)
    """Mask thresholds shown (mask = relevance >= tau)."""
    editor_model: str = DEFAULT_MODEL
    """InstructPix2Pix weights: hub id or local diffusers folder (--pipeline.editor-model of the edit)."""
    t_rel: float = DEFAULTS.t_rel
    """Noise level of the relevance maps (--pipeline.t-rel of the edit)."""
    relevance_iqr_ratio: float | None = None
    """IQR ratio of the relevance maps (--pipeline.relevance-iqr-ratio of the edit). Default: as the edit,
    the editor's recommended ratio (3.5 for the bundled toy editor), else the scene pipeline's 2."""
    device: str = "auto"
    """Where the editor and the NeRF timing run: 'auto' (cuda if available, else cpu), 'cpu', 'cuda:N'."""
    precision: Literal["auto", "fp32", "fp16"] = "auto"
    """Precision of the editor ('auto': the preset's)."""
    downscale_factor: int | None = None
    """The edit's dataparser downscale factor (``ns-train ... nerfstudio-data --downscale-factor N``; None:
    nerfstudio's automatic choice, images_N folders until the longer side is at most 1600 px)."""
    method: Literal["relevance-nerf2nerf", "relevance-nerf2nerf-small", "relevance-nerf2nerf-tiny"] = (
        "relevance-nerf2nerf"
    )
    """The edit's preset, whose schedule and NeRF model the cost estimate uses."""
    edit_iterations: int | None = None
    """Iterations of the edit (default: the preset's --max-num-iterations)."""
    edit_every: int | None = None
    """Iterations between view updates (default: the preset's --pipeline.edit-every)."""
    edit_steps: int | None = None
    """Denoising steps per view update (default: the preset's --pipeline.edit-steps)."""
    views_per_update: int | None = None
    """Views updated per edit event (default: the preset's --pipeline.views-per-update)."""
    crop_to_relevance: bool | None = None
    """Whether the edit crops to the relevance mask (default: the preset's); both are timed either way."""
    timing_views: int = 2
    """On how many of the sampled views one update is timed (full frame and cropped)."""
    nerf_timing_iterations: int = 3
    """Training iterations of the preset's NeRF that are timed (after one untimed warm-up iteration)."""
    max_megapixels: float | None = None
    """Refuse views above this size (default: the edit's guard, 1 MP on the CPU, 4 MP on CUDA)."""
    seed: int = 0
    """Seed of the relevance noise, of the timed edits and of the timed NeRF's initialisation."""


@dataclass
class Views:
    """The sampled views and the dataset's view counts."""

    names: list[str]
    """File names of the sampled views, in dataset order."""
    images: torch.Tensor
    """(V, 3, H, W) pixels in [0, 1], at the size the edit trains on."""
    num_frames: int
    """Frames of the dataset."""
    num_train_views: int
    """Of those, the views an edit trains on and updates (nerfstudio's split)."""


@dataclass
class Schedule:
    """The edit's schedule: the preset's values with the command line's overrides."""

    iterations: int
    """Iterations of the edit."""
    edit_every: int
    """Iterations between edit events."""
    edit_steps: int
    """Denoising steps per view update."""
    views_per_update: int
    """Views updated per edit event."""
    crop_to_relevance: bool
    """Whether the edit crops each update to its relevance mask."""
    noise_range: tuple[float, float]
    """Range of the updates' start noise levels (the timed update starts in its middle)."""

    @property
    def updates(self) -> int:
        """View updates of the edit: one edit event every ``edit_every`` iterations (from iteration 0)."""
        return math.ceil(self.iterations / self.edit_every) * self.views_per_update


# --- views ---------------------------------------------------------------------------------------------
def dataset_frames(data: Path, downscale_factor: int | None) -> tuple[list[Path], int]:
    """The image files of a dataset in nerfstudio's order (sorted by file name) and the training view count.

    A folder with ``transforms.json`` is read as nerfstudio does (``images_N`` folders for a downscale
    factor, the automatic factor when none is given, a 90 % training split); any other folder is its images.

    Args:
        data (Path): the dataset folder or a folder of images.
        downscale_factor (int | None): nerfstudio's ``--downscale-factor`` (None: its automatic choice).
    """
    if not data.is_dir():
        raise InvalidInputError(
            f"--data {data} is not a folder: pass a nerfstudio dataset or a folder of images"
        )
    transforms = data / "transforms.json"
    if not transforms.is_file():
        files = sorted(p for p in data.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise InvalidInputError(
                f"--data {data} has neither transforms.json nor PNG/JPEG images: pass a nerfstudio dataset "
                "(ns-process-data output) or a folder of images"
            )
        return files, len(files)
    try:
        frames = json.loads(transforms.read_text())["frames"]
        relative = [Path(frame["file_path"]) for frame in frames]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise InvalidInputError(f"{transforms} is not a nerfstudio transforms.json ({err})") from err
    if not relative:
        raise InvalidInputError(f"{transforms} lists no frames: pass a dataset with images")
    missing = [p for p in relative if not (data / p).is_file()]
    if missing:
        raise InvalidInputError(
            f"{len(missing)} image(s) of {transforms} are missing, e.g. {data / missing[0]}: fix the dataset"
        )
    factor = downscale_factor or _auto_downscale(data, relative[0])
    files = [_downscaled(data, p, factor) for p in relative]
    return sorted(files), math.ceil(len(files) * TRAIN_SPLIT_FRACTION)


def _auto_downscale(data: Path, first: Path) -> int:
    """nerfstudio's automatic factor: halve while the image is above 1600 px and ``images_2^k`` exists."""
    height, width = image_size(data / first)
    factor = 1
    while (
        max(height, width) / factor > MAX_AUTO_RESOLUTION
        and (data / f"images_{factor * 2}" / first.name).exists()
    ):
        factor *= 2
    return factor


def _downscaled(data: Path, relative: Path, factor: int) -> Path:
    """The file nerfstudio loads for a frame at ``factor`` (``images_<factor>/<name>`` when factor > 1)."""
    return data / relative if factor == 1 else data / f"images_{factor}" / relative.name


def sample_indices(count: int, num_views: int | Literal["all"]) -> list[int]:
    """``num_views`` indices spread evenly over ``range(count)`` (first and last included), or all.

    Args:
        count (int): how many views there are.
        num_views (int | "all"): how many to pick.
    """
    if num_views == "all" or num_views >= count:
        return list(range(count))
    return sorted({round(i * (count - 1) / max(num_views - 1, 1)) for i in range(num_views)})


def load_views(settings: PreviewSettings, size_limit: float) -> Views:
    """Read the sampled views at the size the edit trains on, refusing views above ``size_limit`` MP.

    Args:
        settings (PreviewSettings): the preview's settings (data, num_views, downscale_factor).
        size_limit (float): the megapixel guard of the edit on this device.
    """
    files, num_train = dataset_frames(settings.data, settings.downscale_factor)
    picked = [files[i] for i in sample_indices(len(files), settings.num_views)]
    factor = settings.downscale_factor or 1
    sizes = {path: image_size(path) for path in picked}
    targets = {}
    for path, (height, width) in sizes.items():
        in_place = factor == 1 or path.parent.name == f"images_{factor}"
        targets[path] = (height, width) if in_place else (max(1, height // factor), max(1, width // factor))
        check_megapixels(
            *targets[path],
            size_limit,
            f"view {path}",
            "pass --downscale-factor (the edit's dataparser setting) or raise --max-megapixels",
        )
    if len(set(targets.values())) > 1:
        raise InvalidInputError(
            f"the views have {len(set(targets.values()))} different sizes: scene editing needs one "
            "resolution; resize the images (e.g. ns-process-data) and retry"
        )
    images = torch.cat([load_image(path, size=targets[path]) for path in picked])
    return Views([p.name for p in picked], images, len(files), num_train)


# --- settings ------------------------------------------------------------------------------------------
def validate(settings: PreviewSettings) -> None:
    """Refuse unusable settings in one line, before any file is read, model loaded or folder created.

    Args:
        settings (PreviewSettings): the preview's settings.
    """
    if not settings.instruction:
        raise InvalidInputError('no instruction: pass --instruction "make the ... ..." (one or more)')
    flags = {"instruction": "--instruction", "t_rel": "--t-rel", "iqr_ratio": "--relevance-iqr-ratio"}
    for instruction in settings.instruction:
        ratio = DEFAULTS.iqr_ratio if settings.relevance_iqr_ratio is None else settings.relevance_iqr_ratio
        EditSettings(instruction=instruction, t_rel=settings.t_rel, iqr_ratio=ratio).validate(flags)
    if not settings.taus or not all(math.isfinite(t) and 0.0 <= t <= 1.0 for t in settings.taus):
        raise InvalidInputError(f"--taus must be one or more thresholds in [0, 1], got {settings.taus}")
    if settings.num_views != "all" and settings.num_views < 1:
        raise InvalidInputError(f"--num-views must be at least 1 or 'all', got {settings.num_views}")
    counts = {
        "--downscale-factor": settings.downscale_factor,
        "--edit-iterations": settings.edit_iterations,
        "--edit-every": settings.edit_every,
        "--edit-steps": settings.edit_steps,
        "--views-per-update": settings.views_per_update,
        "--timing-views": settings.timing_views,
        "--nerf-timing-iterations": settings.nerf_timing_iterations,
    }
    for flag, value in counts.items():
        if value is not None and value < 1:
            raise InvalidInputError(f"{flag} must be at least 1, got {value}")
    limit = settings.max_megapixels
    if limit is not None and not (math.isfinite(limit) and limit > 0):
        raise InvalidInputError(f"--max-megapixels must be a positive number, got {limit}")
    if not 0 <= settings.seed < 2**63:
        raise InvalidInputError(f"--seed must be in [0, 2**63 - 1], got {settings.seed}")
    check_editor_model(settings.editor_model)
    check_new_output_dir(settings.output_dir, "--output-dir")


def iqr_ratio(settings: PreviewSettings, editor) -> float:
    """The relevance IQR ratio the edit uses: ``--relevance-iqr-ratio``, else the editor's recommended ratio
    (``relevance_settings.json`` in its folder), else the scene pipeline's ``SCENE_IQR_RATIO``.

    Args:
        settings (PreviewSettings): the preview's settings.
        editor (RelevanceEditor): the loaded :class:`~relevance_nerf2nerf.diffusion.editor.RelevanceEditor`.
    """
    if settings.relevance_iqr_ratio is not None:
        return settings.relevance_iqr_ratio
    return float(getattr(editor, "recommended", {}).get("iqr_ratio", SCENE_IQR_RATIO))


def preset_config(method: str):
    """The nerfstudio TrainerConfig of a scene-editing preset (imports nerfstudio).

    Args:
        method (str): one of :data:`PRESETS`.
    """
    from method_configs import relevance_nerf2nerf as specs

    if method not in PRESETS:
        raise InvalidInputError(f"--method must be one of {', '.join(PRESETS)}, got {method!r}")
    return getattr(specs, method.replace("-", "_")).config


def edit_schedule(settings: PreviewSettings, config) -> Schedule:
    """The edit's schedule: the preset's values, overridden by the settings given.

    Args:
        settings (PreviewSettings): the preview's settings.
        config (TrainerConfig): the preset's TrainerConfig (``preset_config``).
    """
    pipeline = config.pipeline

    def pick(value, default):
        return default if value is None else value

    return Schedule(
        iterations=pick(settings.edit_iterations, config.max_num_iterations),
        edit_every=pick(settings.edit_every, pipeline.edit_every),
        edit_steps=pick(settings.edit_steps, pipeline.edit_steps),
        views_per_update=pick(settings.views_per_update, pipeline.views_per_update),
        crop_to_relevance=pick(settings.crop_to_relevance, pipeline.crop_to_relevance),
        noise_range=tuple(pipeline.edit_noise_range),
    )


# --- measurements --------------------------------------------------------------------------------------
def _timed(device: torch.device, call: Callable, *args, **kwargs) -> tuple[object, float]:
    """``call(*args, **kwargs)``'s result and wall seconds (CUDA work synchronised on both sides)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = call(*args, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start


@dataclass
class InstructionPreview:
    """One instruction's relevance on the sampled views and its measured editor timings."""

    instruction: str
    """The instruction."""
    relevance: torch.Tensor
    """(V, 1, H, W) pixel relevance in [0, 1] of the sampled views, on the CPU."""
    relevance_s: list[float]
    """Seconds of each view's relevance map."""
    update_full_frame_s: list[float]
    """Seconds of each timed update's edit, full frame."""
    update_cropped_s: list[float]
    """Seconds of each timed update's edit, cropped to the relevance mask."""

    def mask_fractions(self, taus: tuple[float, ...]) -> list[dict[str, float]]:
        """Per view, the fraction of pixels whose relevance is >= each tau (keys: the taus as text).

        Args:
            taus (tuple[float, ...]): the mask thresholds.
        """
        return [{f"{t:g}": float((r >= t).float().mean()) for t in taus} for r in self.relevance]


def preview_instruction(
    editor,
    views: Views,
    instruction: str,
    settings: PreviewSettings,
    ratio: float,
    schedule: Schedule,
    tau: float,
    crop: CropSettings,
    device: torch.device,
) -> InstructionPreview:
    """Relevance of every sampled view (timed), then one view update timed full frame and cropped.

    The update is the pipeline's edit call: the view conditioned on itself, its relevance as the mask at the
    edit's ``tau``, ``schedule.edit_steps`` denoising steps from the middle of the start-noise range. One
    untimed one-step edit first warms the editor up.

    Args:
        editor (RelevanceEditor): a :class:`~relevance_nerf2nerf.diffusion.editor.RelevanceEditor`.
        views (Views): the sampled views.
        instruction (str): the instruction.
        settings (PreviewSettings): t_rel, seed, timing_views.
        ratio (float): the relevance IQR ratio.
        schedule (Schedule): the edit's schedule (denoising steps, noise range).
        tau (float): the edit's mask threshold.
        crop (CropSettings): the edit's crop when cropping to relevance.
        device (torch.device): where the editor runs.
    """
    maps, relevance_s = [], []
    for i in range(len(views.names)):
        image = views.images[i : i + 1].to(device)
        generator = torch.Generator().manual_seed(settings.seed + i)
        options = dict(t_rel=settings.t_rel, iqr_ratio=ratio, generator=generator)
        result, seconds = _timed(device, editor.relevance, image, instruction, **options)
        maps.append(result.pixel.cpu())
        relevance_s.append(seconds)
    relevance = torch.cat(maps)
    low, high = schedule.noise_range
    timings: dict[str, list[float]] = {"full": [], "crop": []}
    for k, i in enumerate(sample_indices(len(views.names), settings.timing_views)):
        image = views.images[i : i + 1].to(device)
        options = dict(
            relevance=relevance[i : i + 1].to(device),
            mask_threshold=tau,
            start_noise=(low + high) / 2,
            composite_source=image,
            t_rel=settings.t_rel,
            iqr_ratio=ratio,
        )
        if k == 0:
            editor.edit(
                image, instruction, num_steps=1, generator=torch.Generator().manual_seed(0), **options
            )
        for name, extra in (("full", {}), ("crop", {"crop": crop})):
            generator = torch.Generator().manual_seed(settings.seed + i)
            steps = schedule.edit_steps
            _, seconds = _timed(
                device,
                editor.edit,
                image,
                instruction,
                num_steps=steps,
                generator=generator,
                **options,
                **extra,
            )
            timings[name].append(seconds)
    return InstructionPreview(instruction, relevance, relevance_s, timings["full"], timings["crop"])


def _look_at(eye: torch.Tensor) -> torch.Tensor:
    """A (3, 4) camera-to-world matrix at ``eye`` facing the origin (OpenGL: looking down -z, y up)."""
    forward = -eye / eye.norm()
    right = torch.linalg.cross(forward, torch.tensor([0.0, 0.0, 1.0]))
    right = right / right.norm()
    up = torch.linalg.cross(right, forward)
    return torch.cat([torch.stack([right, up, -forward], dim=1), eye[:, None]], dim=1)


def time_nerf(
    config, height: int, width: int, num_train_views: int, device: torch.device, iterations: int, seed: int
) -> dict[str, float]:
    """Seconds per training iteration and per full-view render of the preset's NeRF, measured here.

    The preset's model (fresh weights) is built in a unit scene box for ``num_train_views`` views and
    trained for ``iterations`` steps (after one untimed step) on batches of the preset's ray count, cast by
    a camera of the views' size looking at the scene's centre, with the preset's loss, optimizers and mixed
    precision; then that camera's full view is rendered as every update renders its view. NeRF cost per
    ray depends on the sample counts, not on the scene, so random targets time it faithfully.

    Args:
        config (TrainerConfig): the preset's TrainerConfig.
        height (int): view height in pixels.
        width (int): view width in pixels.
        num_train_views (int): training views (sizes the per-view embeddings).
        device (torch.device): where the NeRF trains.
        iterations (int): timed training iterations.
        seed (int): seed of the model's initialisation and of the rays drawn.
    """
    from nerfstudio.cameras.cameras import Cameras, CameraType
    from nerfstudio.data.scene_box import SceneBox

    from relevance_nerf2nerf.nerf.relevance import RELEVANCE_TARGET, RELEVANCE_VALID

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
        model = config.pipeline.model.setup(
            scene_box=box, num_train_data=num_train_views, metadata={}, device=device
        ).to(device)
        optimizers = [  # the preset's optimizers; their learning-rate schedules do not change the cost
            config.optimizers[group]["optimizer"].setup(params=params)
            for group, params in model.get_param_groups().items()
        ]
        focal = 0.8 * max(height, width)
        camera = Cameras(
            camera_to_worlds=_look_at(torch.tensor([0.0, -2.0, 1.0]))[None],
            fx=focal,
            fy=focal,
            cx=width / 2,
            cy=height / 2,
            width=width,
            height=height,
            camera_type=CameraType.PERSPECTIVE,
        ).to(device)
        view = camera.generate_rays(camera_indices=0, keep_shape=True)
        rays = view.flatten()
        num_rays = config.pipeline.datamanager.train_num_rays_per_batch
        model.train()

        def step() -> None:
            picked = rays[torch.randint(len(rays), (num_rays,), device=device)]
            picked.camera_indices = torch.randint(num_train_views, (num_rays, 1), device=device)
            batch = {
                "image": torch.rand(num_rays, 3, device=device),
                RELEVANCE_TARGET: torch.rand(num_rays, 1, device=device),
                RELEVANCE_VALID: torch.ones(num_rays, 1, dtype=torch.bool, device=device),
            }
            with torch.autocast(device_type=device.type, enabled=config.mixed_precision):
                outputs = model(picked)
                metrics = model.get_metrics_dict(outputs, batch)
                loss = sum(model.get_loss_dict(outputs, batch, metrics).values())
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for optimizer in optimizers:
                optimizer.step()

        step()
        _, seconds = _timed(device, lambda: [step() for _ in range(iterations)])
        with torch.no_grad():
            _, render_s = _timed(device, model.get_outputs_for_camera_ray_bundle, view)
    return {"s_per_iteration": seconds / iterations, "render_s_per_view": render_s}


def cost_estimate(
    preview: InstructionPreview, nerf: dict[str, float], schedule: Schedule, num_train_views: int
) -> dict[str, float | str]:
    """The full edit's cost in seconds from the measured timings (medians over the timed views).

    An update renders its view (``render_s_per_view``) and edits it; each training view's relevance is
    computed once; every iteration trains the NeRF. Batched updates (views_per_update > 1) are counted as
    that many single-view updates (a batched UNet call is somewhat faster on a GPU).

    Args:
        preview (InstructionPreview): the instruction's measured relevance and update timings.
        nerf (dict[str, float]): :func:`time_nerf`'s measurements.
        schedule (Schedule): the edit's schedule.
        num_train_views (int): the dataset's training views.
    """
    render = nerf["render_s_per_view"]
    update_full = render + statistics.median(preview.update_full_frame_s)
    update_cropped = render + statistics.median(preview.update_cropped_s)
    relevance_total = num_train_views * statistics.median(preview.relevance_s)
    nerf_total = schedule.iterations * nerf["s_per_iteration"]
    total_full = schedule.updates * update_full + relevance_total + nerf_total
    total_cropped = schedule.updates * update_cropped + relevance_total + nerf_total
    chosen = "cropped" if schedule.crop_to_relevance else "full_frame"
    return {
        "seconds_per_update_full_frame": update_full,
        "seconds_per_update_cropped": update_cropped,
        "updates": schedule.updates,
        "relevance_s_all_views": relevance_total,
        "nerf_iterations_s": nerf_total,
        "total_s_full_frame": total_full,
        "total_s_cropped": total_cropped,
        "chosen": chosen,
        "total_s": total_cropped if chosen == "cropped" else total_full,
    }


# --- outputs -------------------------------------------------------------------------------------------
def _thumbnails(frames: np.ndarray, side: int) -> tuple[np.ndarray, int]:
    """(V, H, W, 3) uint8 views shrunk to ``side`` px at most, and the integer upscale that brings small
    views near ``side`` (for :func:`~relevance_nerf2nerf.evaluation.sheets.contact_sheet`)."""
    from PIL import Image

    height, width = frames.shape[1:3]
    if max(height, width) <= side:
        return frames, max(1, side // max(height, width))
    size = (
        max(1, round(width * side / max(height, width))),
        max(1, round(height * side / max(height, width))),
    )
    return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in frames]), 1


def sheet_rows(
    views: Views, previews: list[InstructionPreview], taus: tuple[float, ...]
) -> dict[str, np.ndarray]:
    """Contact-sheet rows: the views, then per instruction its relevance and its mask at every tau.

    Args:
        views (Views): the sampled views.
        previews (list[InstructionPreview]): one per instruction, in order (numbered from 1 in the labels
            when there are several).
        taus (tuple[float, ...]): the thresholds.
    """
    from relevance_nerf2nerf.evaluation.sheets import heatmaps, rgb_rows

    rows = rgb_rows({"view": views.images.permute(0, 2, 3, 1)})
    for k, preview in enumerate(previews):
        prefix = f"{k + 1}: " if len(previews) > 1 else ""
        rows[f"{prefix}relevance"] = heatmaps(preview.relevance[:, 0])
        for tau in taus:
            masks = np.stack([mask_to_uint8(r >= tau) for r in preview.relevance])
            rows[f"{prefix}mask {tau:g}"] = np.repeat(masks[..., None], 3, axis=-1)
    return rows


def _row(*cells: object) -> str:
    """One markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown_report(record: dict) -> str:
    """``preview.md``: the settings, each instruction's per-view mask fractions and its cost estimate.

    Args:
        record (dict): the content of ``preview.json``.
    """
    settings, schedule, nerf = record["settings"], record["schedule"], record["nerf"]
    taus = [f"{t:g}" for t in settings["taus"]]
    height, width = record["image_size"]
    lines = [
        "# Relevance preview",
        "",
        f"Data `{settings['data']}`: {len(record['views'])} of {record['num_frames']} views "
        f"({width}x{height}), editor `{settings['editor_model']}`, t_rel {settings['t_rel']:g}, "
        f"IQR ratio {record['iqr_ratio']:g}, device {record['device']}.",
        f"Edit: {settings['method']}, {schedule['iterations']} iterations, {record['updates']} view updates "
        f"(one every {schedule['edit_every']} iterations, {schedule['edit_steps']} denoising steps each, "
        f"tau {record['edit_tau']:g}), {record['num_train_views']} training views.",
    ]
    for k, (instruction, entry) in enumerate(record["instructions"].items()):
        cost, updates = entry["cost"], entry["cost"]["updates"]
        full, cropped = cost["seconds_per_update_full_frame"], cost["seconds_per_update_cropped"]
        lines += [
            "",
            f'## {k + 1}. "{instruction}"',
            "",
            "Fraction of pixels in the edit mask (relevance >= tau):",
            "",
            _row("view", *(f"tau {t}" for t in taus)),
            _row(*["---"] * (len(taus) + 1)),
            *(_row(view, *(f"{f[t]:.3f}" for t in taus)) for view, f in entry["mask_fractions"].items()),
            _row("mean", *(f"{entry['mean_mask_fraction'][t]:.3f}" for t in taus)),
            "",
            "Estimated cost of the edit in seconds (measured here; the edit runs "
            f"{cost['chosen'].replace('_', ' ')}):",
            "",
            _row("", "full frame", "cropped to relevance"),
            _row("---", "---", "---"),
            _row(
                f"per update (render {nerf['render_s_per_view']:.3f} + edit)", f"{full:.3f}", f"{cropped:.3f}"
            ),
            _row(f"{updates} updates", f"{updates * full:.1f}", f"{updates * cropped:.1f}"),
            _row(
                f"relevance of {record['num_train_views']} views",
                *[f"{cost['relevance_s_all_views']:.1f}"] * 2,
            ),
            _row(
                f"{schedule['iterations']} NeRF iterations ({nerf['s_per_iteration']:.3f} each)",
                *[f"{cost['nerf_iterations_s']:.1f}"] * 2,
            ),
            _row("**total**", f"**{cost['total_s_full_frame']:.1f}**", f"**{cost['total_s_cropped']:.1f}**"),
        ]
    return "\n".join(lines) + "\n"


def run_preview(settings: PreviewSettings) -> Path:
    """Validate, load the views and the editor, measure, then write the output folder whole.

    Args:
        settings (PreviewSettings): the preview's settings.

    Returns the output folder. Raises :class:`~relevance_nerf2nerf.errors.RelevanceError` on bad input,
    before anything is written.
    """
    from PIL import Image

    from relevance_nerf2nerf.diffusion.editor import load_editor
    from relevance_nerf2nerf.diffusion.ip2p import resolve_device
    from relevance_nerf2nerf.evaluation.sheets import contact_sheet

    validate(settings)
    device = resolve_device(
        ("cuda" if torch.cuda.is_available() else "cpu") if settings.device == "auto" else settings.device
    )
    limit = settings.max_megapixels or MAX_MEGAPIXELS.get(device.type, MAX_MEGAPIXELS["cpu"])
    views = load_views(settings, limit)
    config = preset_config(settings.method)
    schedule = edit_schedule(settings, config)
    precision = config.pipeline.editor_precision if settings.precision == "auto" else settings.precision
    if device.type == "cpu":
        precision = "fp32"
    editor = load_editor(settings.editor_model, device=device, precision=precision)
    ratio = iqr_ratio(settings, editor)
    tau = config.pipeline.mask_threshold
    crop = CropSettings(margin=config.pipeline.crop_margin, min_size=config.pipeline.crop_min_size)
    previews = [
        preview_instruction(editor, views, instruction, settings, ratio, schedule, tau, crop, device)
        for instruction in settings.instruction
    ]
    height, width = views.images.shape[-2:]
    nerf = time_nerf(
        config, height, width, views.num_train_views, device, settings.nerf_timing_iterations, settings.seed
    )
    record = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
        "device": str(device),
        "precision": precision,
        "iqr_ratio": ratio,
        "edit_tau": tau,
        "views": views.names,
        "num_frames": views.num_frames,
        "num_train_views": views.num_train_views,
        "image_size": [height, width],
        "schedule": asdict(schedule),
        "updates": schedule.updates,
        "nerf": nerf,
        "instructions": {},
    }
    for preview in previews:
        fractions = preview.mask_fractions(settings.taus)
        record["instructions"][preview.instruction] = {
            "mask_fractions": dict(zip(views.names, fractions, strict=True)),
            "mean_mask_fraction": {t: statistics.fmean(f[t] for f in fractions) for t in fractions[0]},
            "timings_s": {
                "relevance": preview.relevance_s,
                "update_full_frame_edit": preview.update_full_frame_s,
                "update_cropped_edit": preview.update_cropped_s,
            },
            "cost": cost_estimate(preview, nerf, schedule, views.num_train_views),
        }
    rows = sheet_rows(views, previews, settings.taus)
    scale = 1
    for name, frames in rows.items():
        rows[name], scale = _thumbnails(frames, SHEET_VIEW_SIDE)
    with staged_output_dir(settings.output_dir) as staging:
        sheet = contact_sheet(rows, num_columns=len(views.names), scale=scale)
        Image.fromarray(sheet).save(staging / "contact_sheet.png")
        (staging / "preview.json").write_text(json.dumps(record, indent=2) + "\n")
        (staging / "preview.md").write_text(markdown_report(record))
    return settings.output_dir
