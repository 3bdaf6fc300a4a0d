"""Build a small but *real* InstructPix2Pix in diffusers format (random weights).

``build_instruct_pix2pix`` writes a ``StableDiffusionInstructPix2PixPipeline`` directory with
``save_pretrained``: an 8-input-channel ``UNet2DConditionModel``, an ``AutoencoderKL`` whose latent grid
factor is ``2 ** (len(vae_channels) - 1)``, a ``CLIPTextModel`` and a ``CLIPTokenizer`` built from a
small vocabulary, and a scheduler with the SD-1.x betas. Tests load it through the same code users use
for the real weights; the toy editor reuses it (with bigger sizes) as the architecture it trains.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

DEFAULT_WORDS: tuple[str, ...] = (
    "make", "turn", "change", "give", "add", "remove", "into", "it", "the", "a", "an", "to", "of", "with",
    "and", "him", "her", "them", "ball", "cube", "sphere", "box", "object", "disc", "square", "background",
    "sky", "floor", "wall", "face", "hat", "person", "bear", "dog", "cat", "tree", "red", "green", "blue",
    "yellow", "white", "black", "orange", "purple", "pink", "gold", "golden", "brown", "grey", "gray",
    "marble", "stone", "wooden", "metal", "snow", "fire", "panda", "polar", "statue", "painting", "style",
)  # fmt: skip

SPECIAL_START = "<|startoftext|>"
SPECIAL_END = "<|endoftext|>"
# Single characters the tokenizer can always fall back to (CLIP lower-cases its input).
_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'\"-:;()&/+*%#@$=_<>[]{}~`^|\\"

# The configuration the hub's timbrooks/instruct-pix2pix ships (SD-1.x betas, Euler ancestral).
SD_SCHEDULER_CONFIG: dict[str, object] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
}


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's byte-pair merge loop for one lower-case word (last symbol carries ``</w>``)."""
    symbols = list(word[:-1]) + [word[-1] + "</w>"]
    while len(symbols) > 1:
        pairs = [
            (ranks.get((a, b), math.inf), i)
            for i, (a, b) in enumerate(zip(symbols, symbols[1:], strict=False))
        ]
        rank, i = min(pairs)
        if rank == math.inf:
            break
        first, second = symbols[i], symbols[i + 1]
        merged: list[str] = []
        j = 0
        while j < len(symbols):  # merge every occurrence of the pair, left to right
            if j < len(symbols) - 1 and symbols[j] == first and symbols[j + 1] == second:
                merged.append(first + second)
                j += 2
            else:
                merged.append(symbols[j])
                j += 1
        symbols = merged
    return symbols


def write_clip_tokenizer(
    directory: str | Path, vocabulary: Sequence[str], model_max_length: int = 16
) -> Path:
    """Write a CLIP BPE tokenizer (vocab.json + merges.txt) where every vocabulary word is one token.

    Whole words get single tokens through chain merges; each added merge is ranked after all earlier
    ones, so it can only fire once a word cannot merge further, which keeps earlier words intact.
    Every character and character + ``</w>`` stays in the vocabulary, so any text still tokenizes.

    Args:
        directory (str | Path): the tokenizer folder to write.
        vocabulary (Sequence[str]): the words that become single tokens.
        model_max_length (int, default 16): the tokenizer's maximum sequence length.
    """
    from transformers import CLIPTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    words = sorted({w.lower() for w in vocabulary if w.strip()})
    for w in words:
        if not w.isalnum():
            raise ValueError(f"vocabulary word {w!r} must be alphanumeric (one token per word)")
    tokens = [SPECIAL_START, SPECIAL_END] + list(_CHARACTERS) + [c + "</w>" for c in _CHARACTERS]
    ranks: dict[tuple[str, str], int] = {}
    for w in words:
        symbols = _bpe(w, ranks)
        while len(symbols) > 1:
            ranks[(symbols[0], symbols[1])] = len(ranks)
            tokens.append(symbols[0] + symbols[1])
            symbols = _bpe(w, ranks)
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    merges = sorted(ranks, key=ranks.__getitem__)
    (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = CLIPTokenizer.from_pretrained(
        directory, model_max_length=model_max_length, pad_token=SPECIAL_END
    )
    for w in words:
        ids = tokenizer(w, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise RuntimeError(f"tokenizer splits vocabulary word {w!r} into {len(ids)} tokens")
    return directory


def _groups(channels: Sequence[int]) -> int:
    """Largest GroupNorm group count (<= 32) dividing every channel width."""
    return math.gcd(32, *channels)


def build_components(
    *,
    seed: int = 0,
    unet_channels: Sequence[int] = (32, 64),
    vae_channels: Sequence[int] = (32, 64),
    text_dim: int = 32,
    text_layers: int = 2,
    vocabulary: Sequence[str] = DEFAULT_WORDS,
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon",
    scheduler: Literal["euler_ancestral", "ddim"] = "euler_ancestral",
    model_max_length: int = 16,
    layers_per_block: int = 1,
    attention_head_dim: int | None = None,
    vae_layers_per_block: int = 1,
) -> dict[str, Any]:
    """Randomly initialised InstructPix2Pix components (the keyword arguments of the diffusers pipeline).

    The UNet has 8 input channels (noisy latent + conditioning latent) and cross-attention on the text
    embeddings in every block but the lowest-resolution one; ``attention_head_dim`` is diffusers' legacy
    name for its number of heads (default ``min(unet_channels) // 16``). The latent grid factor is
    ``2 ** (len(vae_channels) - 1)``. Weights are deterministic in ``seed``; the global RNG is untouched.

    Args:
        seed (int, default 0): seed of the weights.
        unet_channels (Sequence[int], default (32, 64)): UNet block widths.
        vae_channels (Sequence[int], default (32, 64)): VAE block widths (latent factor ``2 ** (len - 1)``).
        text_dim (int, default 32): text encoder width.
        text_layers (int, default 2): text encoder layers.
        vocabulary (Sequence[str], default DEFAULT_WORDS): words with single tokens.
        prediction_type (Literal['epsilon', 'v_prediction', 'sample'], default 'epsilon'): what the UNet
            predicts.
        scheduler (Literal['euler_ancestral', 'ddim'], default 'euler_ancestral'): the scheduler saved with
            the pipeline.
        model_max_length (int, default 16): token sequence length.
        layers_per_block (int, default 1): UNet ResNet layers per block.
        attention_head_dim (int | None, default None): UNet attention heads (None: ``min(unet_channels) //
            16``).
        vae_layers_per_block (int, default 1): VAE ResNet layers per block.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, EulerAncestralDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        write_clip_tokenizer(tmp, vocabulary, model_max_length)
        tokenizer = CLIPTokenizer.from_pretrained(
            tmp, model_max_length=model_max_length, pad_token=SPECIAL_END
        )
    vocab = tokenizer.get_vocab()

    n_unet = len(unet_channels)
    down = ("CrossAttnDownBlock2D",) * (n_unet - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n_unet - 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=32,
            in_channels=8,
            out_channels=4,
            block_out_channels=tuple(unet_channels),
            layers_per_block=layers_per_block,
            down_block_types=down,
            up_block_types=up,
            cross_attention_dim=text_dim,
            attention_head_dim=attention_head_dim or max(1, min(unet_channels) // 16),
            norm_num_groups=_groups(unet_channels),
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
            up_block_types=("UpDecoderBlock2D",) * len(vae_channels),
            block_out_channels=tuple(vae_channels),
            layers_per_block=vae_layers_per_block,
            latent_channels=4,
            norm_num_groups=_groups(vae_channels),
            sample_size=64,
        )
        text_config = CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=text_dim,
            intermediate_size=4 * text_dim,
            num_hidden_layers=text_layers,
            num_attention_heads=max(1, text_dim // 16),
            max_position_embeddings=model_max_length,
            bos_token_id=vocab[SPECIAL_START],
            eos_token_id=vocab[SPECIAL_END],
            pad_token_id=vocab[SPECIAL_END],
            projection_dim=text_dim,
        )
        text_encoder = CLIPTextModel(text_config)
    scheduler_kwargs = dict(SD_SCHEDULER_CONFIG, prediction_type=prediction_type)
    if scheduler == "ddim":
        noise_scheduler = DDIMScheduler(**scheduler_kwargs, clip_sample=False, set_alpha_to_one=False)
    elif scheduler == "euler_ancestral":
        noise_scheduler = EulerAncestralDiscreteScheduler(**scheduler_kwargs)
    else:
        raise ValueError(f"unknown scheduler {scheduler!r}: use 'euler_ancestral' or 'ddim'")
    return dict(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=noise_scheduler)


def save_pipeline(directory: str | Path, components: dict[str, Any]) -> Path:
    """``save_pretrained`` IP2P components as a ``StableDiffusionInstructPix2PixPipeline`` (safetensors, no
    safety checker) into ``directory``, with the tokenizer's vocab.json + merges.txt too. Returns it.

    Args:
        directory (str | Path): the folder to write.
        components (dict[str, Any]): the pipeline's keyword arguments (unet, vae, ...).
    """
    from diffusers import StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(directory, safe_serialization=True)
    write_vocab_and_merges(directory / "tokenizer")
    return directory


def write_vocab_and_merges(tokenizer_dir: Path) -> None:
    """Also write vocab.json + merges.txt beside tokenizer.json (transformers 5 writes only the latter), so
    the slow ``CLIPTokenizer`` of transformers 4.x loads the folder too.

    Args:
        tokenizer_dir (Path): a tokenizer folder holding tokenizer.json.
    """
    model = json.loads((tokenizer_dir / "tokenizer.json").read_text())["model"]
    merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
    (tokenizer_dir / "vocab.json").write_text(json.dumps(model["vocab"]))
    (tokenizer_dir / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))


def build_instruct_pix2pix(directory: str | Path, **options: Any) -> Path:
    """Build a randomly initialised ``StableDiffusionInstructPix2PixPipeline`` with :func:`build_components`
    (``options`` are its keyword arguments) and save it to ``directory``. Returns ``directory``.

    Args:
        directory (str | Path): the folder to write.
        **options (Any): keyword arguments of :func:`build_components`.
    """
    return save_pipeline(directory, build_components(**options))
