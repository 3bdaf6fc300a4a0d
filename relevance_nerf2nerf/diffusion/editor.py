"""RelevanceEditor: relevance maps (paper 4.1) and relevance-guided editing (4.2) of image batches.

The high-level object both ``relevance-edit`` and the scene-editing pipeline use. It validates inputs,
pads images to the backend's latent grid factor and restores their size, runs the relevance computation
and the masked DDIM sampler, and pastes unedited pixels back at full resolution.

Random draws: ``edit`` draws the sampler's fixed epsilon first, then (if it computes relevance in a separate
call) the relevance noise, all on the CPU from ``generator``; tau = 0 therefore reproduces plain
InstructPix2Pix started from the same initial noise. Given one generator per image, every image draws from
its own, so a batch edits like its images one at a time (batched view updates). With ``crop`` the edit runs
on a window around each mask (``crop.py``) and the window of the same full-frame noise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from relevance_nerf2nerf.diffusion.backend import EditorBackend, NoisePredictions
from relevance_nerf2nerf.diffusion.crop import CropSettings, crop_boxes
from relevance_nerf2nerf.diffusion.images import crop, pad_to_multiple
from relevance_nerf2nerf.diffusion.ip2p import DEFAULT_MODEL, MemoryOptions, oom_advice
from relevance_nerf2nerf.diffusion.relevance import (
    compute_relevance,
    postprocess,
    relevance_from_noise,
    upsample,
)
from relevance_nerf2nerf.diffusion.sampler import add_noise, ddim_timesteps, level_to_timestep, masked_ddim
from relevance_nerf2nerf.diffusion.settings import DEFAULTS, EditSettings, editor_relevance_settings
from relevance_nerf2nerf.errors import InvalidInputError


@dataclass
class RelevanceResult:
    """A relevance map on the latent grid and at the input's pixel resolution, both in [0, 1]."""

    latent: torch.Tensor  # (B,1,h,w)
    pixel: torch.Tensor  # (B,1,H,W), bilinear upsample of ``latent``

    def mask(self, threshold: float) -> torch.Tensor:
        """Edit mask M = 1(R >= tau) at pixel resolution, (B,1,H,W) bool.

        Args:
            threshold (float): tau in [0, 1]; pixels with relevance >= tau are editable.
        """
        return self.pixel >= threshold


@dataclass
class EditResult:
    """What :meth:`RelevanceEditor.edit` returns: the edited image, the relevance that guided it and the
    editable mask."""

    image: torch.Tensor  # (B,3,H,W) in [0,1], same size as the input
    relevance: torch.Tensor  # (B,1,H,W) in [0,1] used for guidance (computed or given)
    mask: torch.Tensor  # (B,1,H,W) bool, the editable region


def validate_edit_settings(
    instruction: str,
    *,
    mask_threshold: float = DEFAULTS.mask_threshold,
    text_guidance: float = DEFAULTS.text_guidance,
    image_guidance: float = DEFAULTS.image_guidance,
    num_steps: int = DEFAULTS.num_steps,
    start_noise: float = DEFAULTS.start_noise,
    t_rel: float = DEFAULTS.t_rel,
    iqr_ratio: float = DEFAULTS.iqr_ratio,
    num_draws: int = DEFAULTS.num_draws,
) -> None:
    """Raise :class:`InvalidInputError` for unusable settings (callable before any model is loaded):
    :meth:`EditSettings.validate <relevance_nerf2nerf.diffusion.settings.EditSettings.validate>` of them.

    Args:
        instruction (str): the edit instruction.
        mask_threshold (float, default 0.5): tau.
        text_guidance (float, default 7.5): s_T.
        image_guidance (float, default 1.5): s_I.
        num_steps (int, default 100): DDIM steps.
        start_noise (float, default 1.0): the start noise level.
        t_rel (float, default 0.8): the relevance noise level.
        iqr_ratio (float, default 1.5): the IQR clamp's ratio.
        num_draws (int, default 1): relevance noise draws.
    """
    EditSettings(
        instruction=instruction,
        mask_threshold=mask_threshold,
        text_guidance=text_guidance,
        image_guidance=image_guidance,
        num_steps=num_steps,
        start_noise=start_noise,
        t_rel=t_rel,
        iqr_ratio=iqr_ratio,
        num_draws=num_draws,
    ).validate()


def _check_images(images: torch.Tensor, name: str, channels: int = 3) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != channels:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InvalidInputError(f"{name} must be a (B,{channels},H,W) tensor, got {shape}")
    if not images.is_floating_point() or images.numel() == 0:
        raise InvalidInputError(f"{name} must be a non-empty float tensor in [0, 1]")
    low, high = images.min().item(), images.max().item()
    if not (0.0 <= low and high <= 1.0):
        raise InvalidInputError(f"{name} values must lie in [0, 1], got [{low:.3g}, {high:.3g}]")


def _check_same_size(images: torch.Tensor, other: torch.Tensor, name: str) -> None:
    if other.shape[0] != images.shape[0] or other.shape[-2:] != images.shape[-2:]:
        raise InvalidInputError(
            f"{name} must match the image's batch and size {tuple(images.shape)}, got {tuple(other.shape)}"
        )


Generators = torch.Generator | Sequence[torch.Generator] | None


def _check_edit_images(
    image: torch.Tensor,
    condition_image: torch.Tensor | None,
    composite_source: torch.Tensor | None,
    relevance: torch.Tensor | None,
    region: torch.Tensor | None,
) -> torch.Tensor | None:
    """The image inputs of :meth:`RelevanceEditor.edit`, checked (one line each): RGB images in [0, 1] and
    one-channel maps, all of ``image``'s size. Returns ``region`` as float (or None).

    Args:
        image (torch.Tensor): (B, 3, H, W), the image(s) to edit.
        condition_image (torch.Tensor | None): what IP2P is conditioned on, or None.
        composite_source (torch.Tensor | None): the pixels pasted back outside the mask, or None.
        relevance (torch.Tensor | None): (B, 1, H, W) given relevance, or None.
        region (torch.Tensor | None): (B, 1, H, W) user region, or None.
    """
    _check_images(image, "image")
    for name, other in (("condition_image", condition_image), ("composite_source", composite_source)):
        if other is not None:
            _check_images(other, name)
            _check_same_size(image, other, name)
    if relevance is not None:
        _check_images(relevance, "relevance", channels=1)
        _check_same_size(image, relevance, "relevance")
    if region is not None:
        region = region.float()
        _check_images(region, "region", channels=1)
        _check_same_size(image, region, "region")
    return region


def _check_generators(generator: Generators, batch: int) -> None:
    if isinstance(generator, list | tuple) and len(generator) != batch:
        raise InvalidInputError(f"pass one generator per image: got {len(generator)} for a batch of {batch}")


def _draw_noise(shape: tuple[int, ...], generator: Generators) -> torch.Tensor:
    """The sampler's fixed epsilon, on the CPU: one draw for the batch, or one per image's own generator."""
    if isinstance(generator, list | tuple):
        return torch.cat([torch.randn((1, *shape[1:]), generator=g, dtype=torch.float32) for g in generator])
    return torch.randn(shape, generator=generator, dtype=torch.float32)


@dataclass(frozen=True)
class _Job:
    """The settings of one ``edit`` call, shared by its full-frame and cropped paths."""

    instruction: str
    timesteps: list[int]
    start_noise: float
    mask_threshold: float
    text_guidance: float
    image_guidance: float
    t_rel: float
    iqr_ratio: float
    progress: bool
    region: torch.Tensor | None = None  # (B,1,H,W) {0, 1} float, padded to the latent grid; None: everywhere

    def within_region(self, mask: torch.Tensor, latent: bool = False) -> torch.Tensor:
        """``mask`` restricted to the region (a latent cell counts when any of its pixels is in the region);
        ``mask`` is on the latent grid (``latent``) or at the unpadded pixel size."""
        if self.region is None:
            return mask
        region = self.region.to(mask.device)
        if latent:
            region = F.adaptive_max_pool2d(region, tuple(mask.shape[-2:]))
        return mask & (crop(region, tuple(mask.shape[-2:])) > 0.5)

    def relevance_from_first_call(self, own_condition: bool, num_train_timesteps: int) -> bool:
        """Whether the first guidance call sees the very latent relevance would (same image, noise, level)."""
        t_rel_step = level_to_timestep(self.t_rel, num_train_timesteps)
        return own_condition and self.start_noise < 1.0 and self.timesteps[0] == t_rel_step


class RelevanceEditor:
    """Relevance maps and relevance-guided edits over any :class:`EditorBackend`.

    Inputs may live on any device and have any size; work happens on the backend's device and results
    come back on the input's device at the input's size.

    Args:
        backend (EditorBackend): the noise predictor, VAE and text encoder.
        recommended (dict[str, float] | None, default None): relevance settings recommended for this editor.
    """

    def __init__(self, backend: EditorBackend, recommended: dict[str, float] | None = None) -> None:
        self.backend = backend
        self.recommended = dict(recommended or {})
        """Relevance settings the editor's folder recommends (``relevance_settings.json``, e.g. iqr_ratio),
        used by the scene pipeline and the demo unless the user sets them."""

    # --- relevance -------------------------------------------------------------------------------------
    def relevance(
        self,
        image: torch.Tensor,
        instruction: str,
        *,
        t_rel: float = DEFAULTS.t_rel,
        iqr_ratio: float = DEFAULTS.iqr_ratio,
        num_draws: int = 1,
        generator: torch.Generator | None = None,
    ) -> RelevanceResult:
        """Relevance map of ``instruction`` on ``image`` (eq. 2-3).

        Args:
            image (torch.Tensor): (B, 3, H, W) in [0, 1].
            instruction (str): the editing instruction.
            t_rel (float, default DEFAULTS.t_rel): noise level in (0, 1] at which the two branches are
                compared.
            iqr_ratio (float, default DEFAULTS.iqr_ratio): outlier fence of the IQR clamp (eq. 3).
            num_draws (int, default 1): noise draws averaged into the map.
            generator (torch.Generator | None, default None): source of the noise (seed it for reproducible
                maps).
        """
        validate_edit_settings(instruction, t_rel=t_rel, iqr_ratio=iqr_ratio, num_draws=num_draws)
        _check_images(image, "image")
        padded, size = pad_to_multiple(image, self.backend.vae_scale_factor)
        with oom_advice():
            latent = compute_relevance(
                self.backend,
                self.backend.encode(padded),
                self.backend.encode_condition(padded),
                self.backend.text_embeddings(instruction),
                t_rel=t_rel,
                iqr_ratio=iqr_ratio,
                num_draws=num_draws,
                generator=generator,
            )
        return self._result(latent, padded.shape[-2:], size, image.device)

    def _result(
        self, latent: torch.Tensor, padded_size: torch.Size, size: tuple[int, int], device: torch.device
    ) -> RelevanceResult:
        pixel = crop(upsample(latent, tuple(padded_size)), size)
        return RelevanceResult(latent=latent.to(device), pixel=pixel.to(device))

    # --- editing ---------------------------------------------------------------------------------------
    def edit(
        self,
        image: torch.Tensor,
        instruction: str,
        *,
        condition_image: torch.Tensor | None = None,
        relevance: torch.Tensor | None = None,
        mask_threshold: float = DEFAULTS.mask_threshold,
        text_guidance: float = DEFAULTS.text_guidance,
        image_guidance: float = DEFAULTS.image_guidance,
        num_steps: int = DEFAULTS.num_steps,
        start_noise: float = DEFAULTS.start_noise,
        composite_source: torch.Tensor | None = None,
        t_rel: float = DEFAULTS.t_rel,
        iqr_ratio: float = DEFAULTS.iqr_ratio,
        generator: Generators = None,
        progress: bool = False,
        crop: CropSettings | None = None,
        region: torch.Tensor | None = None,
    ) -> EditResult:
        """Relevance-guided edit (eq. 4-5) with a final full-resolution composite.

        Pixels where the mask is off are copied bit for bit from ``composite_source`` (default ``image``).
        When ``relevance`` is None it is computed from the conditioning image; if the start level equals
        t_rel and the conditioning image is ``image``, it comes from the sampler's first UNet call.

        Args:
            image (torch.Tensor): (B, 3, H, W) in [0, 1], the image(s) to edit (all denoised in one batched
                UNet call).
            instruction (str): the edit instruction.
            condition_image (torch.Tensor | None, default None): what IP2P is conditioned on (default
                ``image``).
            relevance (torch.Tensor | None, default None): (B, 1, H, W) relevance in [0, 1] to use instead of
                computing it.
            mask_threshold (float, default DEFAULTS.mask_threshold): tau; pixels with relevance >= tau may
                change (0: plain IP2P).
            text_guidance (float, default DEFAULTS.text_guidance): s_T of eq. 1.
            image_guidance (float, default DEFAULTS.image_guidance): s_I of eq. 1.
            num_steps (int, default DEFAULTS.num_steps): DDIM steps.
            start_noise (float, default DEFAULTS.start_noise): 1.0 starts from pure noise; below 1 the input
                is noised to that level.
            composite_source (torch.Tensor | None, default None): the pixels pasted back outside the mask
                (default ``image``).
            t_rel (float, default DEFAULTS.t_rel): noise level of the relevance map (eq. 2).
            iqr_ratio (float, default DEFAULTS.iqr_ratio): the IQR clamp's ratio (eq. 3).
            generator (Generators, default None): one CPU generator for the batch, or a list with one per
                image; with a list every image draws its noise from its own generator, so a batch gives what
                its images give one by one.
            progress (bool, default False): show a progress bar over the denoising steps.
            crop (CropSettings | None, default None): crop-to-relevance (``crop.py``): denoise only a window
                around each image's mask and paste it back (the same noise values land on the same latent
                cells as without cropping). Images whose mask is empty come back as ``composite_source``
                without any model call.
            region (torch.Tensor | None, default None): (B, 1, H, W) bool or {0, 1} float, where the user
                allows changes: the mask becomes (relevance >= tau) within the region, so every pixel outside
                it is ``composite_source``'s.
        """
        validate_edit_settings(
            instruction,
            mask_threshold=mask_threshold,
            text_guidance=text_guidance,
            image_guidance=image_guidance,
            num_steps=num_steps,
            start_noise=start_noise,
            t_rel=t_rel,
            iqr_ratio=iqr_ratio,
        )
        region = _check_edit_images(image, condition_image, composite_source, relevance, region)
        _check_generators(generator, image.shape[0])
        source = image if composite_source is None else composite_source
        backend, factor = self.backend, self.backend.vae_scale_factor
        padded, size = pad_to_multiple(image, factor)
        own_condition = condition_image is None or condition_image is image
        cond_padded = padded if own_condition else pad_to_multiple(condition_image, factor)[0]
        latent_shape = (image.shape[0], backend.latent_channels, *(s // factor for s in padded.shape[-2:]))
        timesteps = ddim_timesteps(num_steps, start_noise, backend.num_train_timesteps, backend.steps_offset)
        job = _Job(
            instruction=instruction,
            timesteps=timesteps,
            start_noise=start_noise,
            mask_threshold=mask_threshold,
            text_guidance=text_guidance,
            image_guidance=image_guidance,
            t_rel=t_rel,
            iqr_ratio=iqr_ratio,
            progress=progress,
            region=None if region is None else pad_to_multiple(region, factor)[0],
        )
        with oom_advice():
            noise = _draw_noise(latent_shape, generator)  # first draw: the sampler's fixed epsilon
            if crop is None:
                return self._edit_frame(padded, size, cond_padded, relevance, source, noise, job, generator)
            latent_relevance = None  # given pixel relevance: its latent mask is pooled, as uncropped
            if relevance is None:
                found = self._relevance_before_edit(padded, size, cond_padded, noise, job, generator)
                relevance, latent_relevance = found.pixel, found.latent
            return self._edit_cropped(
                padded, size, cond_padded, relevance, latent_relevance, source, noise, job, crop
            )

    def _edit_frame(
        self,
        padded: torch.Tensor,
        size: tuple[int, int],
        cond_padded: torch.Tensor,
        relevance: torch.Tensor | None,
        source: torch.Tensor,
        noise: torch.Tensor,
        job: _Job,
        generator: Generators,
        latent_relevance: torch.Tensor | None = None,
    ) -> EditResult:
        """The edit of whole (padded) frames; ``cond_padded is padded`` when the image conditions itself.
        Given pixel ``relevance``, the latent mask is ``latent_relevance >= tau`` when that is given (a
        computed map's own latent grid), else the pixel map average-pooled to the latent grid."""
        backend, factor = self.backend, self.backend.vae_scale_factor
        own_condition = cond_padded is padded
        z0 = backend.encode(padded)
        condition = backend.encode_condition(cond_padded)
        embeddings = backend.text_embeddings(job.instruction)
        noise = noise.to(z0.device)
        # The relevance map: given, computed in its own call, or taken from the first guidance call
        # when that call sees the very latent relevance would (same image, same noise, same level).
        found: list[RelevanceResult] = []
        if relevance is not None:
            latent_map = latent_relevance
            if latent_map is None:
                latent_map = F.avg_pool2d(pad_to_multiple(relevance, factor)[0].to(z0.device), factor)
            found.append(RelevanceResult(latent=latent_map, pixel=relevance))
        elif not job.relevance_from_first_call(own_condition, backend.num_train_timesteps):
            latent_map = self._separate_relevance(
                z0, padded, cond_padded, condition, embeddings, job, generator
            )
            found.append(self._result(latent_map, padded.shape[-2:], size, z0.device))

        def mask_from_first_step(preds: NoisePredictions) -> torch.Tensor:
            latent = postprocess(relevance_from_noise(preds), job.iqr_ratio)
            found.append(self._result(latent, padded.shape[-2:], size, z0.device))
            return job.within_region(latent >= job.mask_threshold, latent=True)

        latent_mask = (
            job.within_region(found[0].latent.to(z0.device) >= job.mask_threshold, latent=True)
            if found
            else mask_from_first_step
        )
        with _progress_bar(job.progress, "relevance-guided edit") as callback:
            latents = masked_ddim(
                backend,
                z0,
                condition,
                embeddings,
                noise,
                job.timesteps,
                mask=latent_mask,
                text_guidance=job.text_guidance,
                image_guidance=job.image_guidance,
                from_pure_noise=job.start_noise >= 1.0,
                callback=callback,
            )
        decoded = crop(backend.decode(latents), size)
        pixel_relevance = found[0].pixel.to(source.device)
        pixel_mask = job.within_region(pixel_relevance >= job.mask_threshold)
        edited = torch.where(pixel_mask, decoded.to(source.device, source.dtype), source)
        return EditResult(image=edited, relevance=pixel_relevance, mask=pixel_mask)

    def _separate_relevance(
        self,
        z0: torch.Tensor,
        padded: torch.Tensor,
        cond_padded: torch.Tensor,
        condition: torch.Tensor,
        embeddings: torch.Tensor,
        job: _Job,
        generator: Generators,
    ) -> torch.Tensor:
        """Relevance of the conditioning image in its own UNet call (eq. 2-3), drawn after the sampler's
        noise; with a list of generators each image draws from its own."""
        cond_z0 = z0 if cond_padded is padded else self.backend.encode(cond_padded)
        backend, settings = self.backend, dict(t_rel=job.t_rel, iqr_ratio=job.iqr_ratio)
        if not isinstance(generator, list | tuple):
            return compute_relevance(backend, cond_z0, condition, embeddings, generator=generator, **settings)
        maps = [
            compute_relevance(
                backend, cond_z0[i : i + 1], condition[i : i + 1], embeddings, generator=g, **settings
            )
            for i, g in enumerate(generator)
        ]
        return torch.cat(maps)

    def _relevance_before_edit(
        self,
        padded: torch.Tensor,
        size: tuple[int, int],
        cond_padded: torch.Tensor,
        noise: torch.Tensor,
        job: _Job,
        generator: Generators,
    ) -> RelevanceResult:
        """The full-frame relevance (latent grid and pixels) a crop needs, from the draws the uncropped edit
        would use: the sampler's noise at the first step when relevance would come from the first guidance
        call."""
        backend = self.backend
        z0 = backend.encode(padded)
        condition = backend.encode_condition(cond_padded)
        embeddings = backend.text_embeddings(job.instruction)
        if job.relevance_from_first_call(cond_padded is padded, backend.num_train_timesteps):
            t = job.timesteps[0]
            z_t = add_noise(z0, noise.to(z0.device), backend.alphas_cumprod[t])
            preds = backend.predict_noise(z_t, t, condition, embeddings, with_uncond=False)
            latent = postprocess(relevance_from_noise(preds), job.iqr_ratio)
        else:
            latent = self._separate_relevance(z0, padded, cond_padded, condition, embeddings, job, generator)
        return self._result(latent, padded.shape[-2:], size, padded.device)

    def _edit_cropped(
        self,
        padded: torch.Tensor,
        size: tuple[int, int],
        cond_padded: torch.Tensor,
        relevance: torch.Tensor,
        latent_relevance: torch.Tensor | None,
        source: torch.Tensor,
        noise: torch.Tensor,
        job: _Job,
        settings: CropSettings,
    ) -> EditResult:
        """Crop-to-relevance: one batched edit of the crops (``crop.crop_boxes``) of the images whose mask is
        not empty, pasted into the padded source; every pixel outside a mask stays ``source``'s. A computed
        map's latent mask is the window of its own latent map (what the uncropped edit thresholds), so a
        crop box covering the whole frame edits exactly as without cropping."""
        factor = self.backend.vae_scale_factor
        relevance = relevance.to(source.device)
        mask = job.within_region(relevance >= job.mask_threshold)
        boxes = crop_boxes(mask, factor, settings)
        keep = [(i, box) for i, box in enumerate(boxes) if box is not None]
        if not keep:  # nothing to edit anywhere: no model call at all
            return EditResult(image=source.clone(), relevance=relevance, mask=mask)

        def windows(tensor: torch.Tensor, latent: bool = False) -> torch.Tensor:
            """The boxes' windows of a padded batch, stacked (at latent resolution if ``latent``)."""
            return torch.stack(
                [tensor[i, :, *(b.latents(factor) if latent else b.pixels())] for i, b in keep]
            )

        source_padded = pad_to_multiple(source, factor)[0]
        crops = windows(padded)
        part = self._edit_frame(
            crops,
            tuple(crops.shape[-2:]),
            crops if cond_padded is padded else windows(cond_padded),
            windows(pad_to_multiple(relevance, factor)[0]),
            windows(source_padded),
            windows(noise, latent=True),
            job if job.region is None else replace(job, region=windows(job.region.to(source.device))),
            None,
            None if latent_relevance is None else windows(latent_relevance.to(noise.device), latent=True),
        )
        out = source_padded.clone()
        for (i, box), edited in zip(keep, part.image, strict=True):
            out[i, :, *box.pixels()] = edited
        return EditResult(image=crop(out, size), relevance=relevance, mask=mask)

    def edit_plain(
        self,
        image: torch.Tensor,
        instruction: str,
        *,
        text_guidance: float = DEFAULTS.text_guidance,
        image_guidance: float = DEFAULTS.image_guidance,
        num_steps: int = DEFAULTS.num_steps,
        start_noise: float = DEFAULTS.start_noise,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Plain InstructPix2Pix (DDIM, eq. 1) without relevance: the baseline ``--compare`` shows.

        Draws the same initial noise as :meth:`edit` for the same generator state.

        Args:
            image (torch.Tensor): (B, 3, H, W) in [0, 1].
            instruction (str): the editing instruction.
            text_guidance (float, default DEFAULTS.text_guidance): s_T of eq. 1.
            image_guidance (float, default DEFAULTS.image_guidance): s_I of eq. 1.
            num_steps (int, default DEFAULTS.num_steps): DDIM steps.
            start_noise (float, default DEFAULTS.start_noise): start noise level (1.0: from pure noise).
            generator (torch.Generator | None, default None): source of the noise.
            progress (bool, default False): show a progress bar.
        """
        validate_edit_settings(
            instruction,
            text_guidance=text_guidance,
            image_guidance=image_guidance,
            num_steps=num_steps,
            start_noise=start_noise,
        )
        _check_images(image, "image")
        backend = self.backend
        padded, size = pad_to_multiple(image, backend.vae_scale_factor)
        with oom_advice():
            z0 = backend.encode(padded)
            noise = torch.randn(z0.shape, generator=generator, dtype=torch.float32).to(z0.device)
            timesteps = ddim_timesteps(
                num_steps, start_noise, backend.num_train_timesteps, backend.steps_offset
            )
            with _progress_bar(progress, "plain InstructPix2Pix") as callback:
                latents = masked_ddim(
                    backend,
                    z0,
                    backend.encode_condition(padded),
                    backend.text_embeddings(instruction),
                    noise,
                    timesteps,
                    mask=None,
                    text_guidance=text_guidance,
                    image_guidance=image_guidance,
                    from_pure_noise=start_noise >= 1.0,
                    callback=callback,
                )
            decoded = crop(backend.decode(latents), size)
        return decoded.to(image.device, image.dtype)


@contextmanager
def _progress_bar(enabled: bool, description: str) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar over denoising steps, as a sampler callback (None when disabled)."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def load_editor(
    model: str | Path = DEFAULT_MODEL,
    device: str | torch.device = "cpu",
    precision: Literal["fp32", "fp16"] = "fp32",
    memory: MemoryOptions | None = None,
) -> RelevanceEditor:
    """A :class:`RelevanceEditor` over InstructPix2Pix loaded from a hub id or a local directory.

    Args:
        model (str | Path, default DEFAULT_MODEL): hub id or local directory written by ``save_pretrained``.
        device (str | torch.device, default 'cpu'): where the UNet and the VAE run.
        precision (Literal['fp32', 'fp16'], default 'fp32'): fp32 or fp16 weights.
        memory (MemoryOptions | None, default None): memory-saving options (``MemoryOptions.low_memory()`` for
            consumer GPUs); default none.

    The editor carries the relevance settings its folder recommends (``relevance_settings.json`` beside
    ``model_index.json``, :func:`~relevance_nerf2nerf.diffusion.settings.editor_relevance_settings`) in
    ``recommended``.
    """
    from relevance_nerf2nerf.diffusion.ip2p import load_backend

    recommended = editor_relevance_settings(model)  # a bad settings file is refused before the weights load
    backend = load_backend(model, device=device, precision=precision, memory=memory)
    return RelevanceEditor(backend, recommended)
