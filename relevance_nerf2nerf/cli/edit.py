"""``relevance-edit``: edit one image by instruction, changing only the relevant region.

Writes the edited image, ``<stem>_relevance.png`` (colour-mapped relevance), ``<stem>_mask.png``,
``<stem>.json`` (settings and timings) and, with ``--compare``, ``<stem>_compare.png``
(input | plain InstructPix2Pix | relevance-guided | relevance). Every input is checked before the model is
loaded, including every output path against every input (symlinks and hard links resolved): no output may
replace the input image or a file of a local model. Outputs are written to temporary names beside their
destinations and renamed into place only once all of them are written, so a failed run changes nothing.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import tyro

from relevance_nerf2nerf.diffusion.ip2p import DEFAULT_MODEL
from relevance_nerf2nerf.errors import InvalidInputError, RelevanceError
from relevance_nerf2nerf.outputs import check_output_file, write_all


@dataclass
class EditCommand:
    """Relevance-guided InstructPix2Pix editing of one image (Watch Your Steps, section 4.2)."""

    image: Path
    """Input image (PNG or JPEG; transparency is composited on white, grayscale becomes RGB)."""
    instruction: str
    """The edit instruction, e.g. "make the ball blue"."""
    output: Path
    """Where to write the edited image (.png or .jpg); the other outputs go beside it. Existing files of these
    names are replaced once the edit succeeded; an output that is the input is refused."""
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
    crop_to_relevance: bool = False
    """Denoise only a window around the relevance mask (pixels outside it are kept bit for bit anyway)."""
    max_megapixels: float | None = None
    """Size guard: images above this many megapixels are refused (or downscaled with --downscale).
    Default: 1 on the CPU, 4 on CUDA (a 6000x4000 photo needs about 14 GB of RAM on the CPU)."""
    downscale: bool = False
    """Edit an image above --max-megapixels at the largest size within it (aspect ratio kept); every
    output then has that size."""

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
    from relevance_nerf2nerf.diffusion.crop import CropSettings
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
    if not 0 <= command.seed < 2**63:
        raise InvalidInputError(f"--seed must be in [0, 2**63 - 1], got {command.seed}")
    if command.output.suffix.lower() not in images.IMAGE_SUFFIXES:
        raise InvalidInputError(f"--output must end in .png, .jpg or .jpeg, got '{command.output}'")
    paths = check_output_paths(command)
    if command.device == "auto":
        device = resolve_device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = resolve_device(command.device)
    image = images.load_image(command.image, size=guarded_size(command, device.type))
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
        crop=CropSettings() if command.crop_to_relevance else None,
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

    heatmap = images.colorize(result.relevance[0])
    contents: dict[str, Callable[[Path], object]] = {
        "edited": partial(images.save_image, result.image),
        "relevance": partial(images.save_image, heatmap),
        "mask": partial(images.save_image, images.mask_to_uint8(result.mask[0])),
    }
    if plain is not None:
        panels = [images.to_uint8(image), images.to_uint8(plain), images.to_uint8(result.image), heatmap]
        contents["compare"] = partial(images.save_image, images.side_by_side(panels))
    record = {
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(command).items()},
        "device": str(device),
        "precision": precision,
        "image_size": list(image.shape[-2:]),
        "mask_fraction": result.mask.float().mean().item(),
        "timings": timings,
    }
    contents["settings"] = lambda path: path.write_text(json.dumps(record, indent=2) + "\n")
    write_all(contents, paths)
    return paths


def guarded_size(command: EditCommand, device_type: str) -> tuple[int, int]:
    """The size to edit ``--image`` at (read from its header, before anything loads): its own, or with
    ``--downscale`` the largest within ``--max-megapixels``; refuses a larger image in one line otherwise.

    Args:
        command: the parsed command line.
        device_type: where the edit runs ("cpu", "cuda"), which sets the default limit.
    """
    from relevance_nerf2nerf.diffusion import images

    limit = command.max_megapixels
    if limit is None:
        limit = images.MAX_MEGAPIXELS.get(device_type, images.MAX_MEGAPIXELS["cpu"])
    elif not (math.isfinite(limit) and limit > 0):
        raise InvalidInputError(f"--max-megapixels must be a positive number, got {limit}")
    height, width = images.image_size(command.image)
    if command.downscale:
        fit = images.fit_megapixels(height, width, limit)
        if fit != (height, width):
            print(
                f"--image is {width}x{height}, above {limit:g} MP: edited at {fit[1]}x{fit[0]} (--downscale)"
            )
        return fit
    advice = "pass --downscale to edit it at {fit}, or raise --max-megapixels"
    images.check_megapixels(height, width, limit, f"--image {command.image} on {device_type}", advice)
    return height, width


def check_output_paths(command: EditCommand) -> dict[str, Path]:
    """The outputs of ``command``, checked before anything loads: none may be an input (the image, a file of
    a local model directory; symlinks and hard links resolved), two outputs may not be one file, none may
    be an existing directory, and their folder must be creatable.

    Args:
        command: the parsed command line.

    Returns the output paths by name (see :meth:`EditCommand.outputs`).
    """
    paths = command.outputs()
    inputs = {"--image": command.image}
    if Path(command.model).expanduser().exists():
        inputs["--model"] = Path(command.model).expanduser()
    claimed: dict[Path, str] = {}
    for name, path in paths.items():
        check_output_file(path, f"the {name} output")
        resolved = path.resolve()
        for flag, source in inputs.items():
            if _is_or_contains(source, path):
                raise InvalidInputError(
                    f"the {name} output {path} would overwrite {flag} {source}: choose another --output"
                )
        if resolved in claimed:
            raise InvalidInputError(
                f"the {name} and {claimed[resolved]} outputs are the same file {resolved}: "
                "choose another --output"
            )
        claimed[resolved] = name
    return paths


def _is_or_contains(source: Path, path: Path) -> bool:
    """Whether writing ``path`` would change ``source`` (the same file, or a file inside that directory)."""
    source_resolved, resolved = source.expanduser().resolve(), path.resolve()
    if resolved == source_resolved or resolved.is_relative_to(source_resolved):
        return True
    try:
        return path.exists() and source.exists() and os.path.samefile(path, source)  # hard links
    except OSError:
        return False


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
