"""The relevance map (paper section 4.1, eq. 2-3), pure torch.

R = |eps(z_t_rel, image, instruction) - eps(z_t_rel, image, "")|, averaged over the latent channels
(and over K noise draws if asked), outliers clamped with the interquartile-range rule, then normalised to
[0, 1] per image. t_rel is a noise level in (0, 1]; it maps to the timestep ``round(t_rel * (T - 1))``
(``sampler.level_to_timestep``), e.g. 799 for t_rel = 0.8 and T = 1000.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from relevance_nerf2nerf.diffusion.backend import EditorBackend, NoisePredictions
from relevance_nerf2nerf.diffusion.sampler import add_noise, level_to_timestep
from relevance_nerf2nerf.diffusion.settings import DEFAULTS, check_iqr_ratio  # noqa: F401 (re-exported)

SCENE_IQR_RATIO = 2.0
"""IQR ratio of the scene pipeline's per-view maps: the authors' scene code uses 2 (paper's 2D maps: 1.5)."""


def relevance_from_noise(preds: NoisePredictions) -> torch.Tensor:
    """Eq. 3 before post-processing: mean over channels of |eps_text - eps_img|, shape (B,1,h,w), float32.

    Args:
        preds (NoisePredictions): the UNet's text and image branch predictions.
    """
    return (preds.eps_text.float() - preds.eps_img.float()).abs().mean(dim=1, keepdim=True)


def iqr_clamp(maps: torch.Tensor, ratio: float = DEFAULTS.iqr_ratio) -> torch.Tensor:
    """Clamp each map (B,1,h,w) to [Q1 - ratio * IQR, Q3 + ratio * IQR] (both tails, linear quantiles).

    A map whose IQR is zero (at least half of its values equal) is left as is: the rule would flatten it
    to a constant and erase a small relevant region.

    Args:
        maps (torch.Tensor): (B, 1, h, w) raw maps.
        ratio (float, default DEFAULTS.iqr_ratio): the fence in interquartile ranges.
    """
    flat = maps.flatten(1).float()
    q1, q3 = torch.quantile(flat, torch.tensor([0.25, 0.75], device=flat.device), dim=1)
    iqr = q3 - q1
    low = torch.where(iqr > 0, q1 - ratio * iqr, flat.amin(dim=1))
    high = torch.where(iqr > 0, q3 + ratio * iqr, flat.amax(dim=1))
    return torch.clamp(flat, low[:, None], high[:, None]).view_as(maps)


def normalize(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map (B,1,h,w) to [0, 1]; a constant map becomes all zeros.

    Args:
        maps (torch.Tensor): (B, 1, h, w) maps.
    """
    flat = maps.flatten(1).float()
    low, high = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    span = high - low
    out = torch.where(span > 0, (flat - low) / torch.where(span > 0, span, 1.0), 0.0)
    return out.view_as(maps)


def postprocess(raw: torch.Tensor, iqr_ratio: float = DEFAULTS.iqr_ratio) -> torch.Tensor:
    """Raw |eps_text - eps_img| map -> relevance in [0, 1]: IQR clamp, then normalisation.

    Args:
        raw (torch.Tensor): (B, 1, h, w) raw maps.
        iqr_ratio (float, default DEFAULTS.iqr_ratio): the IQR clamp's fence.
    """
    return normalize(iqr_clamp(raw, iqr_ratio))


def upsample(latent_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Latent-grid map -> pixel resolution (bilinear, half-pixel centres), kept in [0, 1].

    Args:
        latent_map (torch.Tensor): (B, 1, h, w) map in [0, 1].
        size (tuple[int, int]): (H, W) pixel size.
    """
    return F.interpolate(latent_map, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


def raw_relevance(
    backend: EditorBackend,
    z0: torch.Tensor,
    condition: torch.Tensor,
    text_embeddings: torch.Tensor,
    *,
    t_rel: float = DEFAULTS.t_rel,
    num_draws: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Eq. 3 before post-processing, averaged over ``num_draws`` noise draws: (B,1,h,w) on the latent grid.

    Each draw runs one two-branch UNet call (no unconditional branch) on z_0 noised to t_rel. Noise is drawn
    on the CPU from ``generator`` so results do not depend on the device.

    Args:
        backend (EditorBackend): the editor's model.
        z0 (torch.Tensor): scaled latents of the images.
        condition (torch.Tensor): unscaled conditioning latents.
        text_embeddings (torch.Tensor): [instruction, empty] embeddings.
        t_rel (float, default DEFAULTS.t_rel): noise level in (0, 1].
        num_draws (int, default 1): noise draws averaged.
        generator (torch.Generator | None, default None): source of the noise.
    """
    t = level_to_timestep(t_rel, backend.num_train_timesteps)
    alpha = backend.alphas_cumprod[t]
    total = torch.zeros((z0.shape[0], 1, *z0.shape[2:]), device=z0.device)
    for _ in range(num_draws):
        noise = torch.randn(z0.shape, generator=generator, dtype=torch.float32).to(z0.device)
        preds = backend.predict_noise(
            add_noise(z0, noise, alpha), t, condition, text_embeddings, with_uncond=False
        )
        total = total + relevance_from_noise(preds).to(z0.device)
    return total / num_draws


def compute_relevance(
    backend: EditorBackend,
    z0: torch.Tensor,
    condition: torch.Tensor,
    text_embeddings: torch.Tensor,
    *,
    t_rel: float = DEFAULTS.t_rel,
    iqr_ratio: float = DEFAULTS.iqr_ratio,
    num_draws: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Relevance on the latent grid, (B,1,h,w) in [0, 1], from z_0 noised to t_rel: :func:`raw_relevance`
    (the draws averaged before clamping and normalising), then :func:`postprocess`.

    Args:
        backend (EditorBackend): the editor's model.
        z0 (torch.Tensor): scaled latents of the images.
        condition (torch.Tensor): unscaled conditioning latents.
        text_embeddings (torch.Tensor): [instruction, empty] embeddings.
        t_rel (float, default DEFAULTS.t_rel): noise level in (0, 1].
        iqr_ratio (float, default DEFAULTS.iqr_ratio): the IQR clamp's fence.
        num_draws (int, default 1): noise draws averaged.
        generator (torch.Generator | None, default None): source of the noise.
    """
    raw = raw_relevance(
        backend, z0, condition, text_embeddings, t_rel=t_rel, num_draws=num_draws, generator=generator
    )
    return postprocess(raw, iqr_ratio)
