"""``relevance-edit``: edit one image by instruction, changing only the relevant region.

Writes the edited image, ``<stem>_relevance.png`` (colour-mapped relevance), ``<stem>_mask.png``,
``<stem>.json`` (settings and timings) and, with ``--compare``, ``<stem>_compare.png``
(input | plain InstructPix2Pix | relevance-guided | relevance). Every input is checked before the model is
loaded and files are written only once everything succeeded, so a failed run overwrites nothing.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import tyro

from relevance_nerf2nerf.diffusion.ip2p import DEFAULT_MODEL
from relevance_nerf2nerf.errors import InvalidInputError, RelevanceError


@dataclass
class EditCommand:
    """Relevance-guided InstructPix2Pix editing of one image (Watch Your Steps, section 4.2)."""

    image: Path
    """Input image (PNG or JPEG; transparency is composited on white, grayscale becomes RGB)."""
    instruction: str
    """The edit instruction, e.g. "make the ball blue"."""
    output: Path
    """Where to write the edited image (.png or .jpg); the other outputs go beside it."""
    mask_threshold: float = 0.5
    """tau in [0, 1]: pixels with relevance >= tau may change; 0 gives plain InstructPix2Pix."""
    text_guidance: float = 7.5
    """s_T, the text guidance scale."""
    image_guidance: float = 1.5
    """s_I, the image guidance scale."""
    steps: int = 100
    """Number of DDIM denoising steps."""
    seed: int = 0
    """Seed of the noise; the same seed gives the same result."""
    t_rel: float = 0.8
    """Noise level in (0, 1] at which the relevance map is computed."""
    model: str = DEFAULT_MODEL
    """InstructPix2Pix hub id or a local directory written by save_pretrained."""
    device: str = "auto"
    """'auto' (cuda if available, else cpu), 'cpu', 'cuda' or 'cuda:N'."""
    precision: Literal["auto", "fp32", "fp16"] = "auto"
    """'auto' = fp16 on CUDA, fp32 on CPU."""
    compare: bool = False
    """Also run plain InstructPix2Pix with the same seed and write <stem>_compare.png."""

    def outputs(self) -> dict[str, Path]:
        stem, parent = self.output.stem, self.output.parent
        paths = {
            "edited": self.output,
            "relevance": parent / f"{stem}_relevance.png",
            "mask": parent / f"{stem}_mask.png",
            "settings": parent / f"{stem}.json",
        }
        if self.compare:
            paths["compare"] = parent / f"{stem}_compare.png"
        return paths


def _quiet_libraries() -> None:
    """Silence the hub libraries' loading bars and advice so the command prints one clean bar."""
    import diffusers
    import huggingface_hub
    import transformers

    huggingface_hub.utils.logging.set_verbosity_error()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def run(command: EditCommand) -> dict[str, Path]:
    """Validate, load, edit, then write every output. Raises :class:`RelevanceError` on bad input."""
    import torch

    from relevance_nerf2nerf.diffusion import images
    from relevance_nerf2nerf.diffusion.editor import load_editor, validate_edit_settings
    from relevance_nerf2nerf.diffusion.ip2p import resolve_device

    validate_edit_settings(
        command.instruction,
        mask_threshold=command.mask_threshold,
        text_guidance=command.text_guidance,
        image_guidance=command.image_guidance,
        num_steps=command.steps,
        t_rel=command.t_rel,
    )
    if command.output.suffix.lower() not in images.IMAGE_SUFFIXES:
        raise InvalidInputError(f"--output must end in .png, .jpg or .jpeg, got '{command.output}'")
    if command.output.resolve() == command.image.resolve():
        raise InvalidInputError("--output is the input image: choose another path so the input is kept")
    image = images.load_image(command.image)
    if command.device == "auto":
        device = resolve_device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = resolve_device(command.device)
    precision = (
        command.precision if command.precision != "auto" else ("fp16" if device.type == "cuda" else "fp32")
    )

    _quiet_libraries()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    editor = load_editor(command.model, device=device, precision=precision)
    timings["load_s"] = time.perf_counter() - start
    settings = dict(
        text_guidance=command.text_guidance,
        image_guidance=command.image_guidance,
        num_steps=command.steps,
    )
    start = time.perf_counter()
    result = editor.edit(
        image,
        command.instruction,
        mask_threshold=command.mask_threshold,
        t_rel=command.t_rel,
        generator=torch.Generator().manual_seed(command.seed),
        progress=True,
        **settings,
    )
    timings["edit_s"] = time.perf_counter() - start
    plain = None
    if command.compare:
        start = time.perf_counter()
        plain = editor.edit_plain(
            image,
            command.instruction,
            generator=torch.Generator().manual_seed(command.seed),
            progress=True,
            **settings,
        )
        timings["plain_ip2p_s"] = time.perf_counter() - start

    paths = command.outputs()
    heatmap = images.colorize(result.relevance[0])
    images.save_image(result.image, paths["edited"])
    images.save_image(heatmap, paths["relevance"])
    images.save_image(images.mask_to_uint8(result.mask[0]), paths["mask"])
    if plain is not None:
        panels = [images.to_uint8(image), images.to_uint8(plain), images.to_uint8(result.image), heatmap]
        images.save_image(images.side_by_side(panels), paths["compare"])
    record = {
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(command).items()},
        "device": str(device),
        "precision": precision,
        "image_size": list(image.shape[-2:]),
        "mask_fraction": result.mask.float().mean().item(),
        "timings": timings,
    }
    paths["settings"].write_text(json.dumps(record, indent=2) + "\n")
    return paths


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run, print where the outputs went; errors become one line and exit code 2."""
    command = tyro.cli(EditCommand, args=argv)
    try:
        paths = run(command)
    except RelevanceError as err:
        print(f"relevance-edit: error: {err}", file=sys.stderr)
        return 2
    for name, path in paths.items():
        print(f"{name:>10}: {path}")
    return 0


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
