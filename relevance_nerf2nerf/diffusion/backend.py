"""The editor backend interface: everything the relevance math and the masked sampler need from a
diffusion model, and nothing more. The diffusers InstructPix2Pix implementation lives in
``ip2p.py``; tests use exact doubles that implement the same protocol.

Conventions (shared by every implementation):
- images are float tensors in [0, 1], shape (B, 3, H, W), H and W multiples of ``vae_scale_factor``;
  latents are (B, ``latent_channels``, H / vae_scale_factor, W / vae_scale_factor), and a batch is one
  UNet call per denoising step whose items do not interact (a batch gives what its items give one by one);
- ``encode`` returns *scaled* latents (the diffusion state z_0), ``encode_condition`` returns the
  *unscaled* image-conditioning latents IP2P concatenates to z_t (``latent_dist.mode()``);
- ``alphas_cumprod`` is the training schedule (SD-1.x betas for IP2P), indexed by integer timestep;
  ``final_alpha_cumprod`` is the level DDIM's last step lands on (``alphas_cumprod[0]`` for SD-1.x,
  ``set_alpha_to_one=False``) and ``steps_offset`` the offset of its timestep grid (1 for SD-1.x).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch


@dataclass
class NoisePredictions:
    """The three branches of IP2P's classifier-free guidance batch (paper eq. 1).

    ``eps_uncond`` is None when the call asked only for the two branches relevance needs.
    """

    eps_text: torch.Tensor  # eps(z_t, image, instruction)
    eps_img: torch.Tensor  # eps(z_t, image, "")
    eps_uncond: torch.Tensor | None = None  # eps(z_t, 0, "")


@runtime_checkable
class EditorBackend(Protocol):
    """What the relevance map (eq. 2-3) and the masked sampler (eq. 4-5) call."""

    device: torch.device
    dtype: torch.dtype
    vae_scale_factor: int
    latent_channels: int  # channels of z_0 (4 for Stable Diffusion's VAE)
    num_train_timesteps: int
    alphas_cumprod: torch.Tensor  # (num_train_timesteps,), float32, on CPU
    final_alpha_cumprod: torch.Tensor  # 0-dim float32, on CPU
    steps_offset: int

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> scaled latents z_0.

        Args:
            images (torch.Tensor): (B, 3, H, W) in [0, 1], sides multiples of the latent factor.
        """

    def encode_condition(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> unscaled conditioning latents.

        Args:
            images (torch.Tensor): (B, 3, H, W) in [0, 1], sides multiples of the latent factor.
        """

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [0, 1].

        Args:
            latents (torch.Tensor): (B, 4, h, w) scaled latents.
        """

    def text_embeddings(self, instruction: str) -> torch.Tensor:
        """Embeddings of [instruction, ""] stacked on dim 0: shape (2, L, D).

        Args:
            instruction (str): the editing instruction.
        """

    def predict_noise(
        self,
        z_t: torch.Tensor,
        t: int,
        condition: torch.Tensor,
        text_embeddings: torch.Tensor,
        with_uncond: bool = True,
    ) -> NoisePredictions:
        """One batched UNet call: branches (text, img) and, if ``with_uncond``, the unconditional one.

        Returns epsilon predictions whatever the model's ``prediction_type`` (converted if needed).

        Args:
            z_t (torch.Tensor): (B, 4, h, w) noisy latents at timestep ``t``.
            t (int): the scheduler timestep.
            condition (torch.Tensor): (B, 4, h, w) unscaled conditioning latents of the input images.
            text_embeddings (torch.Tensor): the output of :meth:`text_embeddings`.
            with_uncond (bool, default True): also run the unconditional branch (needed by guidance, not by
                relevance).
        """
