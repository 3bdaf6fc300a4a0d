"""Benchmark: quality of the demo's base reconstruction (``nerfacto-tiny``) against the ground truth.

For every scene seed, the demo's scene (``relevance-scene``: 24 views at 64x64, 3 objects) is generated
and a ``nerfacto-tiny`` base is trained in-process with nerfstudio's ``Trainer`` (one thread), once per
variant of the preset. Every view (train and held-out) is then rendered the way the demo renders it
(eval mode) and compared with the generator's float renders: PSNR over all views (the demo's "base PSNR
vs ground truth"), over the held-out views, the worst single view, and the training seconds.

``preset`` is ``nerfacto-tiny`` as it is (what the demo trained before); ``camera-opt-off+appearance-off``
is what ``relevance-demo`` trains now (its ``EXACT_CAPTURE_ARGS``: exact poses, constant lighting)::

    python benchmarks/bench_base_quality.py --variants preset camera-opt-off+appearance-off  # demo setting
    python benchmarks/bench_base_quality.py --variants preset camera-opt-off --iterations 300 --seeds 11

Results are merged into ``benchmarks/results/base_quality.json`` (keyed by variant, iterations and seed);
``--renders-dir`` also writes each run's renders next to the ground truth as a PNG strip.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import tyro  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # method_configs/ lives beside the package

RESULTS = Path(__file__).parent / "results" / "base_quality.json"
CONSOLE = Console()


def _model(**settings) -> Callable:
    def apply(config) -> None:
        for key, value in settings.items():
            setattr(config.pipeline.model, key, value)

    return apply


def _camera_optimizer(mode: str) -> Callable:
    def apply(config) -> None:
        config.pipeline.model.camera_optimizer.mode = mode

    return apply


def _rays(count: int) -> Callable:
    def apply(config) -> None:
        config.pipeline.datamanager.train_num_rays_per_batch = count

    return apply


CHANGES: dict[str, Callable] = {
    "preset": lambda config: None,
    "camera-opt-off": _camera_optimizer("off"),
    "camera-opt-on": _camera_optimizer("SO3xR3"),
    "appearance-off": _model(use_appearance_embedding=False),
    "appearance-on": _model(use_appearance_embedding=True),
    "background-random": _model(background_color="random"),
    "hash-17": _model(log2_hashmap_size=17),
    "max-res-128": _model(max_res=128),
    "samples-32": _model(num_nerf_samples_per_ray=32),
    "rays-1024": _rays(1024),
}
"""Named changes to the ``nerfacto-tiny`` preset; a variant joins them with ``+`` (``preset``: as it is)."""


def check_variant(variant: str) -> None:
    unknown = [c for c in variant.split("+") if c not in CHANGES]
    if unknown:
        raise SystemExit(f"unknown change(s) {', '.join(unknown)} in {variant!r}: use {', '.join(CHANGES)}")


@dataclass
class Args:
    seeds: list[int] = field(default_factory=lambda: [0, 3, 11, 21])
    """Scene seeds (``relevance-scene --seed``)."""
    variants: list[str] = field(default_factory=lambda: ["preset"])
    """Preset variants to train side by side: CHANGES in this file joined by ``+``."""
    iterations: int = 1500
    """Training iterations per run (the demo's --base-iterations default)."""
    renders_dir: Path | None = None
    """Also write ground truth | render strips (PNG) per run here."""
    threads: int = 1
    """CPU threads (1 is the fastest on a small CPU that other jobs share)."""


def _config(variant: str, scene: Path, output: Path, iterations: int):
    from method_configs.relevance_nerf2nerf import nerfacto_tiny
    from relevance_nerf2nerf._testing import in_process_config

    config = in_process_config(nerfacto_tiny.config, scene, output, "bench", variant, iterations)
    config.steps_per_save = 10**9
    config.logging.local_writer.enable = False
    for change in variant.split("+"):
        CHANGES[change](config)
    return config


def _train(config, progress: Progress, description: str):
    from nerfstudio.engine.trainer import Trainer

    from relevance_nerf2nerf._testing import release_event_writers

    task = progress.add_task(description, total=config.max_num_iterations)

    class _Trainer(Trainer):
        def train_iteration(self, step: int):
            result = super().train_iteration(step)
            progress.advance(task)
            return result

    trainer = _Trainer(config, local_rank=0, world_size=1)
    trainer.setup()
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    release_event_writers()
    progress.remove_task(task)
    return trainer.pipeline, seconds


def render_views_of(pipeline, num_views: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every view (train and eval split) rendered in eval mode at its own camera, in frame order, as the
    demo renders them (in eval mode nerfacto uses the average appearance embedding and no pose correction
    whatever the camera index).

    Returns the renders (V, H, W, 3) and a (V,) bool marking the held-out (eval split) views.
    """
    datamanager = pipeline.datamanager
    renders: list[torch.Tensor | None] = [None] * num_views
    held_out = torch.zeros(num_views, dtype=torch.bool)
    pipeline.eval()
    with torch.no_grad():
        for split, dataset in ((False, datamanager.train_dataset), (True, datamanager.eval_dataset)):
            for i, name in enumerate(dataset._dataparser_outputs.image_filenames):
                frame = int(Path(name).stem.split("_")[-1])
                rays = dataset.cameras[i : i + 1].generate_rays(camera_indices=0, keep_shape=True)
                renders[frame] = pipeline.model.get_outputs_for_camera_ray_bundle(rays)["rgb"].clamp(0, 1)
                held_out[frame] = split
    return torch.stack(renders), held_out  # type: ignore[arg-type]


def _save_strip(path: Path, truth: torch.Tensor, render: torch.Tensor) -> None:
    from PIL import Image

    from relevance_nerf2nerf.diffusion.images import to_uint8

    rows = [torch.cat(list(images), dim=1) for images in (truth, render)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(torch.cat(rows, dim=0)).cpu().numpy()).save(path)


def run(args: Args) -> dict:
    """Train every variant on every seed and return {variant: {seed: measures}}.

    Args:
        args: the parsed command line.
    """
    from relevance_nerf2nerf.diffusion.images import psnr
    from relevance_nerf2nerf.scenes import generate_scene, render_views

    for variant in args.variants:
        check_variant(variant)
    torch.set_num_threads(args.threads)
    results: dict[str, dict[str, dict]] = {v: {} for v in args.variants}
    columns = (TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with tempfile.TemporaryDirectory() as tmp, Progress(*columns, console=CONSOLE) as progress:
        overall = progress.add_task("runs", total=len(args.seeds) * len(args.variants))
        for seed in args.seeds:
            info = generate_scene(Path(tmp) / f"scene-{seed}", seed=seed)
            truth, _ = render_views(info.spec, info.cameras)
            for variant in args.variants:
                random.seed(0)
                np.random.seed(0)
                torch.manual_seed(0)
                config = _config(variant, info.output_dir, Path(tmp) / f"runs-{seed}", args.iterations)
                pipeline, seconds = _train(config, progress, f"seed {seed}: {variant}")
                renders, held_out = render_views_of(pipeline, len(info.cameras))
                per_view = [psnr(r, t) for r, t in zip(renders, truth, strict=True)]
                worst = int(np.argmin(per_view))
                results[variant][str(seed)] = {
                    "objects": ", ".join(f"{o.colour} {o.shape}" for o in info.spec.objects),
                    "psnr_all_views": psnr(renders, truth),
                    "psnr_held_out_views": psnr(renders[held_out], truth[held_out]),
                    "worst_view_psnr": per_view[worst],
                    "worst_view": worst,
                    "train_seconds": round(seconds, 1),
                }
                save_result(f"{variant}@{args.iterations}", seed, results[variant][str(seed)], args.threads)
                if args.renders_dir is not None:
                    strip = args.renders_dir / f"seed{seed}-{variant}-{args.iterations}.png"
                    _save_strip(strip, truth, renders)
                progress.advance(overall)
    return results


def _table(results: dict, iterations: int) -> str:
    seeds = sorted({s for per_seed in results.values() for s in per_seed}, key=int)
    lines = [
        f"Base PSNR vs ground truth, all 24 views (worst view) [train s], {iterations} iterations:",
        "",
        "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
        "|---|" + "---|" * (len(seeds) + 1),
    ]
    for variant, per_seed in results.items():
        cells = [
            f"{m['psnr_all_views']:.1f} ({m['worst_view_psnr']:.1f}) [{m['train_seconds']:.0f}]"
            for m in (per_seed[s] for s in seeds)
        ]
        mean = statistics.mean(per_seed[s]["psnr_all_views"] for s in seeds)
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {mean:.2f} |")
    return "\n".join(lines)


def save_result(key: str, seed: int, measures: dict, threads: int) -> None:
    """Merge one run into ``RESULTS`` (under a lock: runs in parallel processes write one at a time)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with (Path(tempfile.gettempdir()) / "bench_base_quality.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        merged.setdefault("machine", f"{os.cpu_count()}-core CPU, {threads} thread(s) per run, shared")
        merged.setdefault("runs", {}).setdefault(key, {})[str(seed)] = measures
        partial = RESULTS.with_suffix(".json.tmp")
        partial.write_text(json.dumps(merged, indent=2) + "\n")
        partial.replace(RESULTS)


def main() -> None:
    args = tyro.cli(Args)
    results = run(args)
    CONSOLE.print(_table(results, args.iterations), markup=False)


if __name__ == "__main__":
    main()
