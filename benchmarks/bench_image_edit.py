"""Benchmark: relevance-guided editing vs plain InstructPix2Pix at the same number of steps.

Runs both side by side in one process on the same random-weight model (compute does not depend on weight
values) and reports seconds per edit, their ratio (target <= 1.03) and peak memory, for two settings:

- ``image``: 2D editing from pure noise; relevance needs its own two-branch UNet pass at t_rel;
- ``scene``: scene-style editing from the start level t_rel, where relevance comes from the first
  guidance call (no extra pass).

Times are the best of ``--repeats`` interleaved runs (medians and process CPU time are recorded too: on a
shared CPU other load makes single runs noisy); "UNet work" counts the batch items the UNet evaluates,
the cost that does not depend on the machine. Peak memory is ``torch.cuda.max_memory_allocated`` on a GPU
and the peak resident set size sampled during the run on a CPU. Results are merged into
``benchmarks/results/image_edit.json`` under ``<unet>-<device>``.

    python benchmarks/bench_image_edit.py                       # tiny model, CPU
    python benchmarks/bench_image_edit.py --unet sd15 --device cuda --precision fp16
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import tyro
from rich.console import Console
from rich.table import Table

from relevance_nerf2nerf.diffusion.editor import RelevanceEditor
from relevance_nerf2nerf.diffusion.ip2p import InstructPix2PixBackend, resolve_device
from relevance_nerf2nerf.diffusion.settings import DEFAULTS
from relevance_nerf2nerf.toy_editor.build import build_components

RESULTS = Path(__file__).parent / "results" / "image_edit.json"

# Component sizes: "tiny" is the test model; "mid" a CPU-sized model with SD's latent factor 8 and three UNet
# levels (the crop benchmark); "sd15" matches Stable Diffusion 1.5 / InstructPix2Pix.
SIZES: dict[str, dict] = {
    "tiny": dict(unet_channels=(32, 64), vae_channels=(32, 64), text_dim=32, text_layers=2),
    "mid": dict(
        unet_channels=(64, 128, 256), layers_per_block=1, attention_head_dim=4,
        vae_channels=(16, 32, 64, 64), text_dim=64, text_layers=2,
    ),
    "sd15": dict(
        unet_channels=(320, 640, 1280, 1280), layers_per_block=2, attention_head_dim=8,
        vae_channels=(128, 256, 512, 512), vae_layers_per_block=2,
        text_dim=768, text_layers=12, model_max_length=77,
    ),
}  # fmt: skip


@dataclass
class Args:
    unet: Literal["tiny", "mid", "sd15"] = "tiny"
    """Model size: the tiny test model, a mid-sized one or an SD-1.5-sized UNet/VAE/text encoder (random
    weights)."""
    size: int | None = None
    """Square image side in pixels (default 64 for tiny, 512 for sd15)."""
    steps: int = 100
    """Denoising steps for the 2D ("image") setting, the paper's default."""
    scene_steps: int = 20
    """Denoising steps for the scene-style setting (paper: 20)."""
    t_rel: float = DEFAULTS.t_rel
    repeats: int = 7
    """Timed runs per method and setting (best reported, median kept), after a memory-measuring warm-up."""
    device: str = "auto"
    precision: Literal["fp32", "fp16"] = "fp32"
    threads: int | None = None
    """torch CPU threads (default: torch's choice)."""
    output: Path = RESULTS


class PeakRss:
    """Peak resident set size of this process while the context is open, sampled every 2 ms (MiB)."""

    def __enter__(self) -> PeakRss:
        self.peak, self._stop = self._rss(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one call (CPU time is the steadier figure on a shared CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def peak_memory(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory (MiB) of one call: allocated CUDA memory, or the process RSS on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    with PeakRss() as rss:
        fn()
    return rss.peak


class BranchCounter:
    """Counts the UNet batch items (branches x images) a backend evaluates, and the latent cells they hold
    (items x h x w): the compute-bound work."""

    def __init__(self, backend: InstructPix2PixBackend) -> None:
        self.count, self.cells, self._predict = 0, 0, backend.predict_noise
        backend.predict_noise = self  # type: ignore[method-assign]

    def __call__(
        self, z_t: torch.Tensor, *args: object, with_uncond: bool = True, **kwargs: object
    ) -> object:
        items = z_t.shape[0] * (3 if with_uncond else 2)
        self.count += items
        self.cells += items * z_t.shape[-2] * z_t.shape[-1]
        return self._predict(z_t, *args, with_uncond=with_uncond, **kwargs)


def build_editor(args: Args, device: torch.device) -> RelevanceEditor:
    components = build_components(seed=0, **SIZES[args.unet])
    dtype = torch.float16 if args.precision == "fp16" else torch.float32
    for name in ("vae", "unet", "text_encoder"):
        components[name].to(device, dtype).eval().requires_grad_(False)
    backend = InstructPix2PixBackend(
        components["vae"], components["unet"], components["text_encoder"], components["tokenizer"],
        dict(components["scheduler"].config),
    )  # fmt: skip
    return RelevanceEditor(backend)


def main(args: Args) -> dict:
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    size = args.size or (64 if args.unet == "tiny" else 512)
    editor = build_editor(args, device)
    counter = BranchCounter(editor.backend)
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0), device="cpu").to(device)
    instruction = "make the ball blue"
    settings = {"image": (1.0, args.steps), "scene": (args.t_rel, args.scene_steps)}
    rows = []
    for setting, (start_noise, steps) in settings.items():
        common = dict(num_steps=steps, start_noise=start_noise)

        def plain(common=common) -> object:
            return editor.edit_plain(image, instruction, generator=torch.Generator().manual_seed(0), **common)

        def guided(common=common) -> object:
            return editor.edit(
                image, instruction, t_rel=args.t_rel, generator=torch.Generator().manual_seed(0), **common
            )

        methods = {"plain": plain, "relevance": guided}
        runs: dict[str, list[tuple[float, float]]] = {"plain": [], "relevance": []}
        with torch.inference_mode():
            peaks, work = {}, {}
            for name, fn in methods.items():  # warm-up runs measure memory and count UNet work
                before = counter.count
                peaks[name] = peak_memory(fn, device)
                work[name] = counter.count - before
            for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
                for name, fn in methods.items():
                    runs[name].append(timed(fn, device))
        # Best of N is the figure least disturbed by other load (as timeit reports); medians are kept too.
        wall = {k: min(w for w, _ in v) for k, v in runs.items()}
        median = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
        cpu = {k: min(c for _, c in v) for k, v in runs.items()}
        rows.append(
            {
                "setting": setting,
                "start_noise": start_noise,
                "steps": steps,
                "plain_ip2p_s": round(wall["plain"], 4),
                "relevance_s": round(wall["relevance"], 4),
                "ratio": round(wall["relevance"] / wall["plain"], 4),
                "median_ratio": round(median["relevance"] / median["plain"], 4),
                "plain_ip2p_cpu_s": round(cpu["plain"], 4),
                "relevance_cpu_s": round(cpu["relevance"], 4),
                "cpu_ratio": round(cpu["relevance"] / cpu["plain"], 4),
                "plain_unet_items": work["plain"],
                "relevance_unet_items": work["relevance"],
                "unet_work_ratio": round(work["relevance"] / work["plain"], 4),
                "plain_peak_mib": round(peaks["plain"], 1),
                "relevance_peak_mib": round(peaks["relevance"], 1),
            }
        )
    record = {
        "unet": args.unet,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
        "precision": args.precision,
        "image_size": size,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "memory": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "peak process RSS",
        "results": rows,
    }
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results[f"{args.unet}-{device.type}"] = record
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")

    table = Table(title=f"relevance-guided vs plain IP2P — {args.unet} UNet, {record['device']}, {size}px")
    columns = (
        "setting",
        "steps",
        "plain s",
        "relevance s",
        "ratio",
        "median ratio",
        "UNet work",
        "plain MiB",
    )
    for column in (*columns, "relevance MiB"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            row["setting"], str(row["steps"]), f"{row['plain_ip2p_s']:.3f}", f"{row['relevance_s']:.3f}",
            f"{row['ratio']:.3f}", f"{row['median_ratio']:.3f}", f"{row['unet_work_ratio']:.4f}",
            f"{row['plain_peak_mib']:.0f}", f"{row['relevance_peak_mib']:.0f}",
        )  # fmt: skip
    Console(width=130).print(table)
    print(f"written to {args.output}")
    return record


if __name__ == "__main__":
    main(tyro.cli(Args))
