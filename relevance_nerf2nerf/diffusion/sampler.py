"""Relevance-guided DDIM sampling (paper eq. 1, 4 and 5) over an explicit timestep list.

Noise levels: a level s in (0, 1] maps to the integer timestep ``round(s * (T - 1))``; the relevance
timestep t_rel uses the same map, so a start level equal to t_rel noises the image exactly as the
relevance computation does. Level 1.0 means "from pure noise" and uses diffusers' DDIM "leading" grid
(``k * (T // N) + steps_offset``), so that tau = 0 reproduces diffusers' InstructPix2Pix with DDIM (for
N = T the offset is dropped, so the first step stays at a trained timestep).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from relevance_nerf2nerf.diffusion.backend import EditorBackend, NoisePredictions
from relevance_nerf2nerf.diffusion.settings import DEFAULTS
from relevance_nerf2nerf.errors import InvalidInputError

MaskSource = torch.Tensor | Callable[[NoisePredictions], torch.Tensor] | None


def level_to_timestep(level: float, num_train_timesteps: int) -> int:
    """Noise level in [0, 1] -> integer training timestep ``round(level * (T - 1))``.

    Args:
        level (float): noise level in [0, 1].
        num_train_timesteps (int): T, the scheduler's training timesteps.
    """
    return int(round(level * (num_train_timesteps - 1)))


def ddim_timesteps(
    num_steps: int, start_noise: float, num_train_timesteps: int, steps_offset: int = 1
) -> list[int]:
    """The descending DDIM timestep list for ``num_steps`` steps starting at noise level ``start_noise``.

    ``start_noise >= 1``: diffusers' leading grid (pure-noise start, e.g. 991, 981, ..., 1 for N=100).
    Where ``steps_offset`` would push its first step past the last trained timestep T - 1 (only for
    N = T: diffusers' DDIM then fails with an IndexError at t = T), the offset is lowered so the grid
    runs T - 1, ..., 0. Otherwise: ``num_steps`` evenly spaced timesteps from
    ``level_to_timestep(start_noise)`` down to ``steps_offset``, rounded and de-duplicated (fewer steps
    when the span holds fewer timesteps). Every timestep lies in [0, T - 1].

    Args:
        num_steps (int): number of denoising steps N, 1 <= N <= T.
        start_noise (float): noise level in (0, 1] of the first step (>= 1: from pure noise).
        num_train_timesteps (int): T, the number of timesteps the model was trained on.
        steps_offset (int, default 1): the scheduler config's ``steps_offset`` (1 for Stable Diffusion /
            IP2P).

    Raises :class:`InvalidInputError` when N is outside [1, T].
    """
    if num_steps < 1 or num_steps > num_train_timesteps:
        raise InvalidInputError(
            f"number of denoising steps must be in [1, {num_train_timesteps}] for this model (trained on "
            f"{num_train_timesteps} timesteps), got {num_steps}"
        )
    if start_noise >= 1.0:
        ratio = num_train_timesteps // num_steps
        offset = min(steps_offset, num_train_timesteps - 1 - (num_steps - 1) * ratio)
        return [k * ratio + offset for k in reversed(range(num_steps))]
    start = max(level_to_timestep(start_noise, num_train_timesteps), steps_offset)
    grid = torch.linspace(start, steps_offset, num_steps, dtype=torch.float64).round().long()
    return grid.unique_consecutive().tolist()


def add_noise(z0: torch.Tensor, noise: torch.Tensor, alpha_cumprod: torch.Tensor) -> torch.Tensor:
    """Forward diffusion q(z_t | z_0): ``sqrt(a_t) z_0 + sqrt(1 - a_t) eps``.

    Args:
        z0 (torch.Tensor): clean latents.
        noise (torch.Tensor): standard normal noise of the same shape.
        alpha_cumprod (torch.Tensor): a_t, the cumulative alpha at t.
    """
    return alpha_cumprod**0.5 * z0 + (1 - alpha_cumprod) ** 0.5 * noise


def guided_noise(preds: NoisePredictions, text_guidance: float, image_guidance: float) -> torch.Tensor:
    """Eq. 1: eps_uncond + s_I (eps_img - eps_uncond) + s_T (eps_text - eps_img) (diffusers' term order).

    Args:
        preds (NoisePredictions): the UNet's branch predictions.
        text_guidance (float): s_T.
        image_guidance (float): s_I.
    """
    if preds.eps_uncond is None:
        raise ValueError("guidance needs the unconditional branch: call predict_noise(with_uncond=True)")
    return (
        preds.eps_uncond
        + text_guidance * (preds.eps_text - preds.eps_img)
        + image_guidance * (preds.eps_img - preds.eps_uncond)
    )


def ddim_step(
    z_t: torch.Tensor, eps: torch.Tensor, alpha_t: torch.Tensor, alpha_prev: torch.Tensor
) -> torch.Tensor:
    """Eq. 4, deterministic DDIM (eta = 0): the mask-unaware prediction z~_{t-1}.

    Args:
        z_t (torch.Tensor): latents at t.
        eps (torch.Tensor): guided noise prediction at t.
        alpha_t (torch.Tensor): cumulative alpha at t.
        alpha_prev (torch.Tensor): cumulative alpha at t - 1.
    """
    z0_pred = (z_t - (1 - alpha_t) ** 0.5 * eps) / alpha_t**0.5
    return alpha_prev**0.5 * z0_pred + (1 - alpha_prev) ** 0.5 * eps


def masked_ddim(
    backend: EditorBackend,
    z0: torch.Tensor,
    condition: torch.Tensor,
    text_embeddings: torch.Tensor,
    noise: torch.Tensor,
    timesteps: list[int],
    *,
    mask: MaskSource = None,
    text_guidance: float = DEFAULTS.text_guidance,
    image_guidance: float = DEFAULTS.image_guidance,
    from_pure_noise: bool = True,
    callback: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Denoise with relevance guidance (eq. 4-5) and return the final latents.

    ``noise`` is the one fixed epsilon: the start latent (itself when ``from_pure_noise``, else
    z_0 noised to ``timesteps[0]``) and every unedited latent z^_{t-1} = sqrt(a_{t-1}) z_0 +
    sqrt(1 - a_{t-1}) eps. After each step z_{t-1} = M z~_{t-1} + (1 - M) z^_{t-1} at the t-1 level;
    the last step blends with z_0 itself. ``mask`` is a (B,1,h,w) bool latent mask, None (no blending:
    plain IP2P), or a callable that builds it from the first step's predictions (relevance sharing).

    Args:
        backend (EditorBackend): the editor's model.
        z0 (torch.Tensor): scaled latents of the input.
        condition (torch.Tensor): unscaled conditioning latents.
        text_embeddings (torch.Tensor): [instruction, empty] embeddings.
        noise (torch.Tensor): the fixed noise of the run (start latents and the noised input).
        timesteps (list[int]): descending DDIM timesteps.
        mask (MaskSource, default None): editable latents (1 = edit), a tensor or a per-step callable; None:
            edit everything (plain IP2P).
        text_guidance (float, default DEFAULTS.text_guidance): s_T.
        image_guidance (float, default DEFAULTS.image_guidance): s_I.
        from_pure_noise (bool, default True): start from ``noise`` (True) or from the input noised to the
            first timestep.
        callback (Callable[[int, int], None] | None, default None): called with (step, total) after each step.
    """
    alphas = backend.alphas_cumprod
    z = noise if from_pure_noise else add_noise(z0, noise, alphas[timesteps[0]])
    for i, t in enumerate(timesteps):
        preds = backend.predict_noise(z, t, condition, text_embeddings, with_uncond=True)
        if callable(mask):
            mask = mask(preds)
        prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        alpha_prev = alphas[prev] if prev >= 0 else backend.final_alpha_cumprod
        z = ddim_step(z, guided_noise(preds, text_guidance, image_guidance), alphas[t], alpha_prev)
        if mask is not None:
            unedited = add_noise(z0, noise, alphas[prev]) if prev >= 0 else z0
            z = torch.where(mask, z, unedited)
        if callback is not None:
            callback(i + 1, len(timesteps))
    return z
