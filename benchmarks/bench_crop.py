"""Benchmark: crop-to-relevance and batched view updates against full-frame updates, side by side in one run.

1. ``speed``: seconds per scene-style view update (what ``RelevanceNerf2NerfPipeline.edit_views`` asks of the
   editor: relevance given, conditioned on the original, ``--steps`` DDIM steps from start level
   ``--start-noise``), full frame vs cropped, at a disc mask covering ``--mask-fraction`` of a square image;
   best of ``--repeats`` interleaved runs (medians and process CPU time kept). UNet work: latent cells the
   UNet denoises (batch items x branches x h x w). Target: cropped / full <= 0.5 at 25 % of a 256 px image.
2. ``batched``: views per second with k = 1, 2, 4 views per UNet call (one generator per view, full frames).
3. ``memory``: peak memory of one full-frame update without and with ``MemoryOptions.low_memory()``
   (``torch.cuda.max_memory_allocated`` on a GPU, the process RSS on a CPU), and its time.
4. ``quality`` (``--quality-samples`` > 0): the bundled toy editor on held-out generated scenes
   (``toy_editor.evaluate.held_out_samples``), full frame vs cropped with the same seeds: colour hit rate,
   colour error, PSNR outside the object, mask IoU with the object, UNet cells and seconds per edit.

Results are merged into ``benchmarks/results/crop.json`` under ``<unet>-<device>``.

    python benchmarks/bench_crop.py                                   # CPU: mid-sized UNet at 256 px
    python benchmarks/bench_crop.py --unet sd15 --device cuda --precision fp16 --size 512 --batch-unet sd15
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import tyro
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from bench_image_edit import Args as ImageArgs  # noqa: E402  (the model sizes live there)
from bench_image_edit import BranchCounter, build_editor, peak_memory, timed  # noqa: E402

from relevance_nerf2nerf.diffusion.crop import CropSettings, crop_boxes  # noqa: E402
from relevance_nerf2nerf.diffusion.editor import RelevanceEditor  # noqa: E402
from relevance_nerf2nerf.diffusion.ip2p import MemoryOptions, resolve_device  # noqa: E402
from relevance_nerf2nerf.outputs import recorded_path  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "crop.json"
REPO = Path(__file__).resolve().parent.parent
INSTRUCTION = "make the ball blue"
CONSOLE = Console(width=130)


@dataclass
class Args:
    unet: Literal["tiny", "mid", "sd15"] = "mid"
    """Model of the speed and memory parts (random weights)."""
    size: int = 256
    """Square image side of the speed and memory parts, in pixels."""
    batch_unet: Literal["tiny", "mid", "sd15"] = "tiny"
    """Model of the batched part."""
    batch_size: int = 64
    """Image side of the batched part."""
    batches: tuple[int, ...] = (1, 2, 4)
    """Views per UNet call to compare."""
    mask_fraction: float = 0.25
    """Area of the disc mask, as a fraction of the image."""
    crop_margin: float = CropSettings.margin
    """Crop margin (fraction of the longer image side) of every cropped variant."""
    crop_min_size: float = CropSettings.min_size
    """Smallest crop side (fraction of the image side) of every cropped variant."""
    steps: int = 20
    """DDIM steps per update (the paper's scene setting)."""
    start_noise: float = 0.5
    """Start level of an update (the mean of the paper's U[0.02, 0.98])."""
    repeats: int = 3
    """Timed runs per variant (best reported), after one warm-up run that also counts the UNet work."""
    quality_samples: int = 16
    """Held-out toy scenes for the quality comparison (0: skip)."""
    device: str = "auto"
    precision: Literal["fp32", "fp16"] = "fp32"
    threads: int | None = None
    """torch CPU threads (default: torch's choice)."""
    output: Path = RESULTS


def disc_relevance(size: int, fraction: float, batch: int = 1) -> torch.Tensor:
    """(B, 1, S, S) relevance 0.9 inside a disc of ``fraction`` of the area, 0 outside; image b's disc is
    centred a little off the middle, at a different place per image."""
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    radius = size * (fraction / torch.pi) ** 0.5
    maps = []
    for b in range(batch):
        cy, cx = size * (0.45 + 0.03 * b), size * (0.55 - 0.04 * b)
        maps.append(((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2).float() * 0.9)
    return torch.stack(maps)[:, None]


def _crop(args: Args) -> CropSettings:
    return CropSettings(margin=args.crop_margin, min_size=args.crop_min_size)


def _views(batch: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    renders = torch.rand(batch, 3, size, size, generator=g)
    return renders.to(device), torch.rand(batch, 3, size, size, generator=g).to(device)


def _update(editor: RelevanceEditor, args: Args, views, relevance, crop: CropSettings | None):
    renders, originals = views
    generators = [torch.Generator().manual_seed(i) for i in range(renders.shape[0])]
    return editor.edit(
        renders, INSTRUCTION, condition_image=originals, relevance=relevance.to(renders.device),
        composite_source=originals, num_steps=args.steps, start_noise=args.start_noise, generator=generators,
        crop=crop,
    )  # fmt: skip


def _best(fns: dict, repeats: int, device: torch.device) -> dict[str, dict[str, float]]:
    """Best and median wall seconds and best CPU seconds of interleaved runs of each function."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            runs[name].append(timed(fn, device))
    return {
        name: {
            "best_s": min(w for w, _ in r),
            "median_s": statistics.median(w for w, _ in r),
            "cpu_s": min(c for _, c in r),
        }
        for name, r in runs.items()
    }


def bench_speed(editor: RelevanceEditor, args: Args, device: torch.device) -> dict:
    counter = BranchCounter(editor.backend)
    views = _views(1, args.size, device)
    relevance = disc_relevance(args.size, args.mask_fraction)
    crop = _crop(args)
    (box,) = crop_boxes(relevance >= 0.5, editor.backend.vae_scale_factor, crop)
    assert box is not None
    variants = {"full": lambda: _update(editor, args, views, relevance, None)}
    variants["cropped"] = lambda: _update(editor, args, views, relevance, crop)
    cells = {}
    for name, fn in variants.items():  # warm-up: counts the UNet work
        before = counter.cells
        fn()
        cells[name] = counter.cells - before
    times = _best(variants, args.repeats, device)
    return {
        "mask_fraction": round(float((relevance >= 0.5).float().mean()), 4),
        "crop_box": [box.height, box.width],
        "crop_area_fraction": round(box.height * box.width / args.size**2, 4),
        "full_s": round(times["full"]["best_s"], 4),
        "cropped_s": round(times["cropped"]["best_s"], 4),
        "ratio": round(times["cropped"]["best_s"] / times["full"]["best_s"], 4),
        "median_ratio": round(times["cropped"]["median_s"] / times["full"]["median_s"], 4),
        "cpu_ratio": round(times["cropped"]["cpu_s"] / times["full"]["cpu_s"], 4),
        "full_unet_cells": cells["full"],
        "cropped_unet_cells": cells["cropped"],
        "unet_cells_ratio": round(cells["cropped"] / cells["full"], 4),
    }


def bench_batched(editor: RelevanceEditor, args: Args, device: torch.device) -> dict:
    k_max = max(args.batches)
    views = _views(k_max, args.batch_size, device)
    relevance = disc_relevance(args.batch_size, args.mask_fraction, k_max)
    variants = {
        k: (lambda k=k: _update(editor, args, (views[0][:k], views[1][:k]), relevance[:k], None))
        for k in args.batches
    }
    for fn in variants.values():
        fn()  # warm-up
    times = _best(variants, args.repeats, device)
    per_second = {k: k / t["best_s"] for k, t in times.items()}
    base = per_second[min(args.batches)]
    return {
        "model": args.batch_unet,
        "image_size": args.batch_size,
        "seconds_per_call": {str(k): round(t["best_s"], 4) for k, t in times.items()},
        "views_per_second": {str(k): round(v, 4) for k, v in per_second.items()},
        "throughput_ratio": {str(k): round(v / base, 4) for k, v in per_second.items()},
    }


def bench_memory(editor: RelevanceEditor, args: Args, device: torch.device) -> dict:
    views = _views(1, args.size, device)
    relevance = disc_relevance(args.size, args.mask_fraction)

    def update() -> object:
        return _update(editor, args, views, relevance, None)

    result = {"without_options_peak_mib": round(peak_memory(update, device), 1)}
    result["without_options_s"] = round(timed(update, device)[0], 4)
    backend = editor.backend
    # the real SD-1.5 VAE tiles above its 512 px sample size, not above the builder's 64
    backend.vae.tile_sample_min_size = 512
    backend.vae.tile_latent_min_size = 512 // backend.vae_scale_factor
    backend.apply_memory_options(MemoryOptions.low_memory())
    if device.type == "cuda":
        torch.cuda.empty_cache()
    result["with_options_peak_mib"] = round(peak_memory(update, device), 1)
    result["with_options_s"] = round(timed(update, device)[0], 4)
    result["options"] = asdict(MemoryOptions.low_memory())
    return result


def bench_quality(args: Args) -> dict:
    """The toy editor (CPU, 64 px held-out scenes) full frame vs cropped, the same seeds and relevance."""
    from relevance_nerf2nerf.assets import TOY_EDITOR_DIR
    from relevance_nerf2nerf.diffusion.editor import load_editor
    from relevance_nerf2nerf.toy_editor.evaluate import held_out_samples, score_edit

    editor = load_editor(TOY_EDITOR_DIR)
    counter = BranchCounter(editor.backend)
    samples = held_out_samples(args.quality_samples, seed=0)
    scores: dict[str, list[dict[str, float]]] = {"full": [], "cropped": []}
    for i, sample in enumerate(samples):
        for name, crop in (("full", None), ("cropped", _crop(args))):
            before, start = counter.cells, time.perf_counter()
            result = editor.edit(
                sample.image, sample.instruction, mask_threshold=0.5, num_steps=args.steps,
                generator=torch.Generator().manual_seed(i), crop=crop,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            mask = result.mask[0, 0]
            iou = ((mask & sample.mask).sum() / (mask | sample.mask).sum().clamp(min=1)).item()
            scores[name].append(
                score_edit(sample, result.image)
                | {"mask_iou": iou, "unet_cells": counter.cells - before, "seconds": seconds}
            )
    summary = {
        name: {k: round(sum(s[k] for s in rows) / len(rows), 4) for k in rows[0]}
        for name, rows in scores.items()
    }
    summary["num_samples"] = len(samples)
    summary["image_size"] = int(samples[0].image.shape[-1])
    summary["setting"] = f"tau 0.5, {args.steps} DDIM steps from pure noise, relevance computed (full frame)"
    return summary


def main(args: Args) -> dict:
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    record: dict = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "settings": {
            k: (recorded_path(v, REPO) if isinstance(v, Path) else v) for k, v in asdict(args).items()
        },
        "crop_settings": asdict(_crop(args)),
    }
    with torch.inference_mode():
        editor = build_editor(ImageArgs(unet=args.unet, precision=args.precision), device)
        record["speed"] = bench_speed(editor, args, device)
        if args.batch_unet != args.unet:
            editor = build_editor(ImageArgs(unet=args.batch_unet, precision=args.precision), device)
        record["batched"] = bench_batched(editor, args, device)
        if args.batch_unet != args.unet:
            editor = build_editor(ImageArgs(unet=args.unet, precision=args.precision), device)
        record["memory"] = bench_memory(editor, args, device)
        del editor
        if args.quality_samples > 0:
            record["quality"] = bench_quality(args)
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results[f"{args.unet}-{device.type}"] = record
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    _print(record, args)
    print(f"written to {args.output}")
    return record


def _print(record: dict, args: Args) -> None:
    speed, batched, memory = record["speed"], record["batched"], record["memory"]
    table = Table("measure", "value", title=f"crop-to-relevance and batched updates — {record['device']}")
    table.add_row(
        f"update, full frame ({args.unet}, {args.size} px, {args.steps} steps)", f"{speed['full_s']:.3f} s"
    )
    table.add_row(
        f"update, cropped (mask {speed['mask_fraction']:.0%}, box {speed['crop_box']})",
        f"{speed['cropped_s']:.3f} s",
    )
    table.add_row("cropped / full time (best; median)", f"{speed['ratio']:.3f}; {speed['median_ratio']:.3f}")
    table.add_row("cropped / full UNet latent cells", f"{speed['unet_cells_ratio']:.3f}")
    for k, ratio in batched["throughput_ratio"].items():
        table.add_row(
            f"k = {k} views per call ({batched['model']}, {batched['image_size']} px)",
            f"{batched['views_per_second'][k]:.3f} views/s (x{ratio:.2f})",
        )
    table.add_row(
        "peak memory without / with memory options",
        f"{memory['without_options_peak_mib']:.0f} / {memory['with_options_peak_mib']:.0f} MiB",
    )
    for name, row in record.get("quality", {}).items():
        if isinstance(row, dict):
            table.add_row(
                f"toy editor, {name}",
                f"hit {row['hit']:.3f}, colour err {row['colour_error']:.3f}, "
                f"PSNR out {row['psnr_outside']:.2f} dB, IoU {row['mask_iou']:.3f}, {row['seconds']:.3f} s",
            )
    CONSOLE.print(table)


if __name__ == "__main__":
    main(tyro.cli(Args))
