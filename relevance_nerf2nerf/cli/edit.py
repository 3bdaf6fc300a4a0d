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
from typing import Any, Literal

import tyro

from relevance_nerf2nerf.cli.common import quiet_libraries, run_command
from relevance_nerf2nerf.diffusion.ip2p import DEFAULT_MODEL
from relevance_nerf2nerf.diffusion.settings import DEFAULTS
from relevance_nerf2nerf.errors import InvalidInputError
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
    names are refused unless --overwrite is given; an output that is an input is always refused."""
    mask_threshold: float = DEFAULTS.mask_threshold
    """tau in [0, 1]: pixels with relevance >= tau may change; 0 gives plain InstructPix2Pix."""
    text_guidance: float = DEFAULTS.text_guidance
    """s_T, the text guidance scale."""
    image_guidance: float = DEFAULTS.image_guidance
    """s_I, the image guidance scale."""
    steps: int = DEFAULTS.num_steps
    """Number of DDIM denoising steps."""
    seed: int = 0
    """Seed of the noise; the same seed gives the same result."""
    t_rel: float = DEFAULTS.t_rel
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
    overwrite: bool = False
    """Replace existing files of the output names (only once every output is written); without it a run whose
    outputs exist is refused before the model loads."""
    region_mask: Path | None = None
    """A mask image of --image's size (white = may change): the edit mask becomes relevance >= tau within it,
    and every pixel outside it stays the input's."""

    def outputs(self) -> dict[str, Path]:
        """Output name -> path: the edited image and, beside it, relevance, mask, record (and compare)."""
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


@dataclass
class EditInputs:
    """What :func:`check_edit_inputs` established before any model loads."""

    paths: dict[str, Path]
    """The output paths by name (:meth:`EditCommand.outputs`)."""
    device: Any
    """The torch device of the edit."""
    precision: str
    """'fp32' or 'fp16'."""
    image: Any
    """The input image, (1, 3, H, W) in [0, 1], at the size it is edited at."""
    region: Any = None
    """--region-mask at the edit's size, (1, 1, H, W) bool, or None."""


def check_edit_inputs(command: EditCommand) -> EditInputs:
    """Every check of ``relevance-edit`` before the model loads: settings, seed, output paths, device, the
    image and its size. Raises :class:`RelevanceError` (one line) on bad input.

    Args:
        command (EditCommand): the parsed command line.
    """
    import torch

    from relevance_nerf2nerf.diffusion import images
    from relevance_nerf2nerf.diffusion.editor import validate_edit_settings
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
    return EditInputs(paths, device, precision, image, region_mask(command, tuple(image.shape[-2:])))


def region_mask(command: EditCommand, size: tuple[int, int]) -> Any:
    """``--region-mask`` as (1, 1, H, W) bool at the edit's ``size`` (None without one); a mask whose size is
    not --image's is refused in one line.

    Args:
        command (EditCommand): the parsed command line.
        size (tuple[int, int]): (height, width) the image is edited at (--downscale may shrink it).
    """
    from relevance_nerf2nerf.diffusion import images

    if command.region_mask is None:
        return None
    mask_size, image_size = images.image_size(command.region_mask), images.image_size(command.image)
    if mask_size != image_size:
        raise InvalidInputError(
            f"--region-mask {command.region_mask} is {mask_size[1]}x{mask_size[0]}, --image "
            f"{image_size[1]}x{image_size[0]}: give a mask of the image's size (white = may change)"
        )
    return images.load_mask(command.region_mask, size=size)


def edit_image(command: EditCommand, editor, image, region=None) -> tuple[Any, Any, dict[str, float]]:
    """The relevance-guided edit and, with ``--compare``, plain InstructPix2Pix from the same seed.

    Args:
        command (EditCommand): the parsed command line.
        editor (RelevanceEditor): the loaded editor.
        image (torch.Tensor): the input image (1, 3, H, W).
        region (torch.Tensor | None, default None): where the edit may change pixels, (1, 1, H, W) bool.

    Returns (the edit's result, the plain edit or None, timings in seconds by name).
    """
    import torch

    from relevance_nerf2nerf.diffusion.crop import CropSettings

    timings: dict[str, float] = {}
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
        region=region,
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
    return result, plain, timings


def output_writers(
    command: EditCommand, inputs: EditInputs, result, plain, timings: dict[str, float]
) -> dict[str, Callable[[Path], object]]:
    """Output name -> function writing it (edited image, relevance, mask, settings, compare panel).

    Args:
        command (EditCommand): the parsed command line.
        inputs (EditInputs): the checked inputs.
        result (EditResult): the relevance-guided edit.
        plain (torch.Tensor | None): the plain InstructPix2Pix edit (``--compare``).
        timings (dict[str, float]): seconds by stage, recorded in the settings file.
    """
    from relevance_nerf2nerf.diffusion import images

    heatmap = images.colorize(result.relevance[0])
    contents: dict[str, Callable[[Path], object]] = {
        "edited": partial(images.save_image, result.image),
        "relevance": partial(images.save_image, heatmap),
        "mask": partial(images.save_image, images.mask_to_uint8(result.mask[0])),
    }
    if plain is not None:
        panels = [*(images.image_to_array(x) for x in (inputs.image, plain, result.image)), heatmap]
        contents["compare"] = partial(images.save_image, images.side_by_side(panels))
    record = {
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(command).items()},
        "device": str(inputs.device),
        "precision": inputs.precision,
        "image_size": list(inputs.image.shape[-2:]),
        "mask_fraction": result.mask.float().mean().item(),
        "timings": timings,
    }
    contents["settings"] = lambda path: path.write_text(json.dumps(record, indent=2) + "\n")
    return contents


def run(command: EditCommand) -> dict[str, Path]:
    """Validate, load, edit, then write every output. Raises :class:`RelevanceError` on bad input.

    Args:
        command (EditCommand): the parsed command line.

    Returns the output paths by name.
    """
    from relevance_nerf2nerf.diffusion.editor import load_editor

    inputs = check_edit_inputs(command)
    quiet_libraries()
    start = time.perf_counter()
    editor = load_editor(command.model, device=inputs.device, precision=inputs.precision)
    load_s = time.perf_counter() - start
    result, plain, timings = edit_image(command, editor, inputs.image, inputs.region)
    write_all(output_writers(command, inputs, result, plain, {"load_s": load_s, **timings}), inputs.paths)
    return inputs.paths


def guarded_size(command: EditCommand, device_type: str) -> tuple[int, int]:
    """The size to edit ``--image`` at (read from its header, before anything loads): its own, or with
    ``--downscale`` the largest within ``--max-megapixels``; refuses a larger image in one line otherwise.

    Args:
        command (EditCommand): the parsed command line.
        device_type (str): where the edit runs ("cpu", "cuda"), which sets the default limit.
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
    a local model directory; symlinks and hard links resolved), none may exist already unless ``--overwrite``,
    two outputs may not be one file, none may be an existing directory, and their folder must be creatable.

    Args:
        command (EditCommand): the parsed command line.

    Returns the output paths by name (see :meth:`EditCommand.outputs`).
    """
    paths = command.outputs()
    inputs = {"--image": command.image}
    if command.region_mask is not None:
        inputs["--region-mask"] = command.region_mask
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
        if path.exists() and not command.overwrite:
            raise InvalidInputError(
                f"the {name} output {path} already exists: pass --overwrite to replace it, or choose another "
                "--output"
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
    """Parse ``argv``, run, print where the outputs went; errors become one line and exit code 2.

    Args:
        argv (list[str] | None, default None): command-line arguments; None: ``sys.argv[1:]``.
    """
    return run_command("relevance-edit", lambda: tyro.cli(EditCommand, args=argv), _run_and_report)


def _run_and_report(command: EditCommand) -> None:
    for name, path in run(command).items():
        print(f"{name:>10}: {path}")


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
