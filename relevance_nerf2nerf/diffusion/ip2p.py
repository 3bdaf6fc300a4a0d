"""InstructPix2Pix (diffusers) as an :class:`EditorBackend`.

The pipeline's components (VAE, UNet, CLIP text encoder, tokenizer, scheduler config) are loaded with
``from_pretrained`` from a hub id or a local directory written by ``save_pretrained``. Sampling is not
delegated to a diffusers scheduler: the DDIM alphas come from the model's own scheduler config (SD-1.x betas
for IP2P), read into a fresh scheduler object so the loaded configuration is never mutated, and the sampler
(``sampler.py``) computes its timestep list explicitly.

Memory options for consumer GPUs (:class:`MemoryOptions`): sliced attention in the UNet, sliced and tiled
VAE encoding/decoding, and the CLIP text encoder kept on the CPU (the instruction is fixed during an edit:
its embeddings are computed once, cached on the UNet's device, and the encoder never takes GPU memory).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from relevance_nerf2nerf.diffusion.backend import NoisePredictions
from relevance_nerf2nerf.errors import InvalidInputError, ModelNotFoundError, RelevanceError

DEFAULT_MODEL = "timbrooks/instruct-pix2pix"
Precision = Literal["fp32", "fp16"]
_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16}


@contextlib.contextmanager
def oom_advice() -> Iterator[None]:
    """Turn a CUDA out-of-memory error into a :class:`RelevanceError` that says what to do."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as err:
        raise RelevanceError(
            "out of GPU memory while editing: use --precision fp16, a smaller image, or --device cpu"
        ) from err


@dataclass(frozen=True)
class MemoryOptions:
    """Trade a little speed for less GPU memory (all off: the fastest)."""

    attention_slicing: bool = False
    """Compute the UNet's attention in slices (diffusers' ``set_attention_slice("auto")``)."""
    vae_slicing: bool = False
    """Encode and decode a batch one image at a time."""
    vae_tiling: bool = False
    """Encode and decode images larger than the VAE's sample size in overlapping tiles."""
    text_encoder_on_cpu: bool = False
    """Keep the text encoder on the CPU in fp32; the embeddings of the instruction are cached on the GPU."""

    @classmethod
    def low_memory(cls) -> MemoryOptions:
        """Every option on (the ``-small`` preset's choice)."""
        return cls(attention_slicing=True, vae_slicing=True, vae_tiling=True, text_encoder_on_cpu=True)


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse a device string and check that it is usable here.

    Args:
        device (str | torch.device): e.g. "cpu", "cuda", "cuda:1" or a ``torch.device``.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InvalidInputError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device {device!r} requested but CUDA is not available: use --device cpu")
    return resolved


def _looks_like_path(model: str) -> bool:
    """Hub ids are 'name' or 'owner/name'; anything else that names no directory is meant as a path."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


class InstructPix2PixBackend:
    """IP2P's VAE, UNet and text encoder behind the :class:`EditorBackend` protocol.

    ``predict_noise`` makes ONE batched UNet call in diffusers' branch order [text, img, uncond]
    (text embeddings [prompt, "", ""], image latents [img, img, 0]); without the unconditional branch the
    batch holds only the first two. Outputs are converted to epsilon for v_prediction/sample models.
    """

    def __init__(
        self,
        vae: Any,
        unet: Any,
        text_encoder: Any,
        tokenizer: Any,
        scheduler_config: dict[str, Any],
    ) -> None:
        from diffusers import DDIMScheduler

        self.vae, self.unet, self.text_encoder, self.tokenizer = vae, unet, text_encoder, tokenizer
        self.device = next(unet.parameters()).device
        self.dtype = next(unet.parameters()).dtype
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.latent_channels = int(vae.config.latent_channels)
        self.scaling_factor = float(vae.config.scaling_factor)
        # A fresh DDIM built from a copy of the model's config: SD-1.x betas, the loaded config untouched.
        config = {k: v for k, v in dict(scheduler_config).items() if not k.startswith("_")}
        ddim = DDIMScheduler.from_config(config)
        self.num_train_timesteps = int(ddim.config.num_train_timesteps)
        self.alphas_cumprod = ddim.alphas_cumprod.to(torch.float32).cpu()
        set_alpha_to_one = bool(config.get("set_alpha_to_one", False))
        self.final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0]
        self.steps_offset = int(config.get("steps_offset", 0))
        self.prediction_type = str(config.get("prediction_type", "epsilon"))
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ModelNotFoundError(
                f"unsupported prediction_type {self.prediction_type!r} in scheduler config"
            )
        self._text_cache: dict[str, torch.Tensor] = {}

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path = DEFAULT_MODEL,
        device: str | torch.device = "cpu",
        precision: Precision = "fp32",
        memory: MemoryOptions | None = None,
    ) -> InstructPix2PixBackend:
        """Load the components from a hub id or a ``save_pretrained`` directory.

        Args:
            model (str | Path, default DEFAULT_MODEL): hub id or local directory.
            device (str | torch.device, default 'cpu'): where the UNet and the VAE run.
            precision (Precision, default 'fp32'): fp32 or fp16 weights.
            memory (MemoryOptions | None, default None): memory-saving options (default: none).

        Raises :class:`ModelNotFoundError` (one line, with the fix) when they cannot be loaded.
        """
        if precision not in _DTYPES:
            raise InvalidInputError(f"unknown precision {precision!r}: use 'fp32' or 'fp16'")
        torch_device = resolve_device(device)
        dtype = _DTYPES[precision]
        source = str(model)
        local = Path(source).expanduser()
        if local.exists():
            if not (local / "unet").is_dir() or not (local / "vae").is_dir():
                raise ModelNotFoundError(
                    f"'{source}' is not an InstructPix2Pix directory (no unet/ and vae/): pass a directory "
                    "written by StableDiffusionInstructPix2PixPipeline.save_pretrained or a hub id"
                )
            source = str(local)
        elif _looks_like_path(source):
            raise ModelNotFoundError(
                f"model directory '{source}' does not exist: pass a local directory saved with "
                f"save_pretrained or a hub id such as {DEFAULT_MODEL}"
            )
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        try:
            vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=dtype)
            unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=dtype)
            # transformers names its dtype argument differently across versions: cast it below instead.
            text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder")
            tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer")
            scheduler_config = DDIMScheduler.load_config(source, subfolder="scheduler")
        except Exception as err:  # hub/network/format errors come in many types; all mean "cannot load"
            raise ModelNotFoundError(
                f"could not load InstructPix2Pix from '{model}' (offline?): pass a local directory saved "
                f"with save_pretrained, or connect to the network ({type(err).__name__})"
            ) from err
        with oom_advice():
            for module in (vae, unet, text_encoder):
                module.to(torch_device, dtype).eval().requires_grad_(False)
        backend = cls(vae, unet, text_encoder, tokenizer, scheduler_config)
        backend.apply_memory_options(memory or MemoryOptions())
        return backend

    def apply_memory_options(self, options: MemoryOptions) -> None:
        """Switch on the memory savings ``options`` asks for (options already on stay on).

        Args:
            options (MemoryOptions): which savings to apply.
        """
        if options.attention_slicing:
            self.unet.set_attention_slice("auto")
        if options.vae_slicing:
            self.vae.enable_slicing()
        if options.vae_tiling:
            self.vae.enable_tiling()
        if options.text_encoder_on_cpu:
            self.text_encoder.to("cpu", torch.float32)
            self._text_cache = {}
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    # --- EditorBackend -------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> z_0 = scaling_factor * mode of the VAE posterior (deterministic).

        Args:
            images (torch.Tensor): (B, 3, H, W) in [0, 1], sides multiples of the latent factor.
        """
        return self._posterior_mode(images) * self.scaling_factor

    @torch.no_grad()
    def encode_condition(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> unscaled conditioning latents, as diffusers' IP2P pipeline makes them.

        Args:
            images (torch.Tensor): (B, 3, H, W) in [0, 1], sides multiples of the latent factor.
        """
        return self._posterior_mode(images)

    def _posterior_mode(self, images: torch.Tensor) -> torch.Tensor:
        x = 2.0 * images.to(self.device, self.dtype) - 1.0
        return self.vae.encode(x).latent_dist.mode().float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [0, 1] (float32).

        Args:
            latents (torch.Tensor): (B, 4, h, w) scaled latents.
        """
        x = self.vae.decode(latents.to(self.device, self.dtype) / self.scaling_factor, return_dict=False)[0]
        return (x.float() * 0.5 + 0.5).clamp(0, 1)

    @torch.no_grad()
    def text_embeddings(self, instruction: str) -> torch.Tensor:
        """[instruction, ""] through the CLIP text encoder, each encoded on its own as diffusers does; cached
        on the UNet's device (only the latest instruction is kept).

        Args:
            instruction (str): the editing instruction.
        """
        if instruction not in self._text_cache:
            embeds = [self._encode_text(text) for text in (instruction, "")]
            self._text_cache = {instruction: torch.cat(embeds).to(self.device, self.dtype)}
        return self._text_cache[instruction]

    def _encode_text(self, text: str) -> torch.Tensor:
        ids = self.tokenizer(
            text, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        ).input_ids  # fmt: skip
        return self.text_encoder(ids.to(self.text_encoder.device))[0]

    @torch.no_grad()
    def predict_noise(
        self,
        z_t: torch.Tensor,
        t: int,
        condition: torch.Tensor,
        text_embeddings: torch.Tensor,
        with_uncond: bool = True,
    ) -> NoisePredictions:
        """One UNet call over the branches [text, img(, uncond)]; epsilon predictions in float32.

        Args:
            z_t (torch.Tensor): noisy latents, cast to the UNet's device and precision.
            t (int): timestep of ``z_t``.
            condition (torch.Tensor): the inputs' conditioning latents (:meth:`encode_condition`).
            text_embeddings (torch.Tensor): [instruction, ""] (:meth:`text_embeddings`), shared by the batch.
            with_uncond (bool, default True): add the unconditional branch (zero image, empty text).
        """
        b = z_t.shape[0]
        text, empty = (e.expand(b, -1, -1) for e in text_embeddings.to(self.device, self.dtype).split(1))
        z = z_t.to(self.device, self.dtype)
        cond = condition.to(self.device, self.dtype)
        hidden = [text, empty, empty] if with_uncond else [text, empty]
        image_latents = [cond, cond, torch.zeros_like(cond)] if with_uncond else [cond, cond]
        branches = len(hidden)
        model_in = torch.cat([torch.cat([z] * branches), torch.cat(image_latents)], dim=1)
        out = self.unet(model_in, t, encoder_hidden_states=torch.cat(hidden), return_dict=False)[0].float()
        eps = self._to_epsilon(out, torch.cat([z_t.float().to(self.device)] * branches), t)
        chunks = eps.chunk(branches)
        return NoisePredictions(chunks[0], chunks[1], chunks[2] if with_uncond else None)

    def _to_epsilon(self, out: torch.Tensor, z_t: torch.Tensor, t: int) -> torch.Tensor:
        if self.prediction_type == "epsilon":
            return out
        alpha = self.alphas_cumprod[t]
        if self.prediction_type == "v_prediction":
            return alpha**0.5 * out + (1 - alpha) ** 0.5 * z_t
        return (z_t - alpha**0.5 * out) / (1 - alpha) ** 0.5  # "sample": the model predicts z_0


def load_backend(
    model: str | Path = DEFAULT_MODEL,
    device: str | torch.device = "cpu",
    precision: Precision = "fp32",
    memory: MemoryOptions | None = None,
) -> InstructPix2PixBackend:
    """Shorthand for :meth:`InstructPix2PixBackend.from_pretrained`.

    Args:
        model (str | Path, default DEFAULT_MODEL): a hub id or a local folder written by ``save_pretrained``.
        device (str | torch.device, default 'cpu'): where the model runs.
        precision (Precision, default 'fp32'): "fp32" or "fp16".
        memory (MemoryOptions | None, default None): memory-saving options (sliced attention, VAE tiling, text
            encoder on the CPU); None: off.
    """
    return InstructPix2PixBackend.from_pretrained(model, device=device, precision=precision, memory=memory)
