"""Benchmark: the relevance nerfacto vs plain nerfacto, and the cost of one dataset update.

1. Per training iteration, side by side in one process on the same ray batches (interleaved, so machine
   load hits both alike): time of forward + losses + backward + Adam step, and memory: the bytes autograd
   saves for backward (exact, any device) and, on a GPU, ``torch.cuda.max_memory_allocated``.
   Target: relevance overhead <= 10 %.
2. Seconds per dataset update (``RelevanceNerf2NerfPipeline.edit_view``: render + relevance-guided edit),
   first visit of a view (includes its relevance map) and later visits.

CPU (default): the tiny preset on a synthetic 64 px scene, the tiny random-weight InstructPix2Pix.
``--gpu``: the full nerfacto preset at 4096 rays and an SD-1.5-sized InstructPix2Pix (random weights) on
512 px views, with peak GPU memory. Results are merged into ``benchmarks/results/scene_edit.json``.

    python benchmarks/bench_scene_edit.py            # CPU
    python benchmarks/bench_scene_edit.py --gpu      # a CUDA machine
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import tyro
from rich.console import Console
from rich.progress import track
from rich.table import Table

RESULTS = Path(__file__).parent / "results" / "scene_edit.json"
CONSOLE = Console()


@dataclass
class Args:
    gpu: bool = False
    """Full-size preset, SD-1.5-sized editor, 512 px views, CUDA."""
    iterations: int = 30
    """Timed training iterations per model (after 5 warm-up iterations)."""
    rays: int | None = None
    """Rays per batch (default: 512 on CPU, 4096 on GPU)."""
    size: int | None = None
    """Square view side in pixels (default: 64 on CPU, 512 on GPU)."""
    updates: int = 3
    """Timed dataset updates (the first ones are first visits)."""
    precision: str = "fp32"
    """Editor precision on the GPU: fp32 or fp16."""
    threads: int = 1
    """CPU threads (1 is the fastest on a small CPU that other jobs share)."""
    output: Path = RESULTS
    """JSON file the results are merged into (under "gpu" or "cpu")."""


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@contextmanager
def _count_saved_bytes(total: list[int]):
    """Sum the sizes of the tensors autograd saves for backward."""

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        total[0] += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield


def _pipeline(scene: Path, args: Args, device: str):
    from method_configs.relevance_nerf2nerf import relevance_nerf2nerf, relevance_nerf2nerf_tiny

    config = copy.deepcopy((relevance_nerf2nerf if args.gpu else relevance_nerf2nerf_tiny).config.pipeline)
    config.instruction = "make the cube blue"
    config.datamanager.data = scene
    config.datamanager.train_num_rays_per_batch = args.rays
    if not args.gpu:
        config.model.implementation = "torch"
    config.model.use_lpips = False
    config.editor_precision = args.precision
    return config.setup(device=device, test_mode="val")


def _plain_nerfacto(pipeline, device: str):
    """nerfstudio's NerfactoModel with the same settings (LPIPS skipped: offline)."""
    from nerfstudio.models.nerfacto import NerfactoModelConfig

    from relevance_nerf2nerf.nerf.nerfacto_model import nerfacto_without_lpips

    source = pipeline.model.config
    names = [f.name for f in fields(NerfactoModelConfig) if f.name != "_target"]
    config = NerfactoModelConfig(**{name: copy.deepcopy(getattr(source, name)) for name in names})
    dataset = pipeline.datamanager.train_dataset
    with nerfacto_without_lpips():
        model = config.setup(
            scene_box=dataset.scene_box, num_train_data=len(dataset), metadata=dataset.metadata, device=device
        )
    return model.to(device)


def _step(model, optimizer, ray_bundle, batch) -> None:
    outputs = model(ray_bundle)
    metrics = model.get_metrics_dict(outputs, batch)
    loss = sum(model.get_loss_dict(outputs, batch, metrics).values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def bench_iterations(pipeline, args: Args, device: str) -> dict:
    datamanager = pipeline.datamanager
    generator = torch.Generator().manual_seed(0)
    h, w = datamanager.edited_images.shape[1:3]
    for index in range(datamanager.num_views):  # every ray supervised: the relevance loss is fully active
        datamanager.set_relevance(index, torch.rand(1, 1, h, w, generator=generator))
    models = {"nerfacto": _plain_nerfacto(pipeline, device), "relevance": pipeline.model}
    optimizers = {name: torch.optim.Adam(model.parameters(), lr=1e-3) for name, model in models.items()}
    for model in models.values():
        model.train()
    times: dict[str, list[float]] = {name: [] for name in models}
    saved: dict[str, int] = {}
    peak: dict[str, float] = {}
    for i in track(range(args.iterations + 5), description="training iterations (both models)"):
        ray_bundle, batch = datamanager.next_train(i)
        for name, model in models.items():
            rays = copy.deepcopy(ray_bundle)  # the camera optimizer adjusts a bundle in place
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            _sync(device)
            start = time.perf_counter()
            if i == 0:
                total = [0]
                with _count_saved_bytes(total):
                    _step(model, optimizers[name], rays, batch)
                saved[name] = total[0]
            else:
                _step(model, optimizers[name], rays, batch)
            _sync(device)
            if i >= 5:
                times[name].append(time.perf_counter() - start)
            if device == "cuda":
                peak[name] = max(peak.get(name, 0.0), torch.cuda.max_memory_allocated() / 2**20)
    result = {
        "rays": args.rays,
        "iterations": args.iterations,
        **{f"{name}_ms_per_iteration": 1000 * statistics.median(t) for name, t in times.items()},
        **{f"{name}_saved_for_backward_mib": b / 2**20 for name, b in saved.items()},
        **{f"{name}_peak_gpu_mib": p for name, p in peak.items()},
    }
    result["time_overhead_percent"] = 100 * (
        result["relevance_ms_per_iteration"] / result["nerfacto_ms_per_iteration"] - 1
    )
    result["memory_overhead_percent"] = 100 * (saved["relevance"] / saved["nerfacto"] - 1)
    return result


def _editor(args: Args, device: str, workdir: Path):
    if not args.gpu:
        from relevance_nerf2nerf.diffusion.editor import load_editor
        from relevance_nerf2nerf.toy_editor.build import build_instruct_pix2pix

        return load_editor(build_instruct_pix2pix(workdir / "tiny-ip2p", seed=0), device=device), "tiny IP2P"
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_image_edit import Args as ImageArgs  # the SD-1.5 sizes live there
    from bench_image_edit import build_editor

    editor = build_editor(ImageArgs(unet="sd15", precision=args.precision), torch.device(device))
    return editor, f"SD-1.5-sized IP2P, random weights, {args.precision}"


def bench_updates(pipeline, args: Args, device: str, workdir: Path) -> dict:
    editor, name = _editor(args, device, workdir)
    pipeline.editor = editor
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds, edited = [], []
    for k in track(range(args.updates + 1), description="dataset updates"):
        index = edited[0] if k == args.updates else None  # first visits, then one revisit
        _sync(device)
        start = time.perf_counter()
        edited.append(pipeline.edit_view(index))
        _sync(device)
        seconds.append(time.perf_counter() - start)
    result = {
        "editor": name,
        "edit_steps": pipeline.config.edit_steps,
        "view_pixels": list(pipeline.datamanager.edited_images.shape[1:3]),
        "seconds_per_update_first_visit": statistics.mean(seconds[:-1]),
        "seconds_per_update_revisit": seconds[-1],
    }
    if device == "cuda":
        result["update_peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def main(args: Args) -> None:
    from relevance_nerf2nerf.scenes import generate_scene

    device = "cuda" if args.gpu else "cpu"
    if args.gpu and not torch.cuda.is_available():
        CONSOLE.print("[red]--gpu needs a CUDA device; run without --gpu for the CPU benchmark")
        raise SystemExit(1)
    args.rays = args.rays or (4096 if args.gpu else 512)
    args.size = args.size or (512 if args.gpu else 64)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        scene = generate_scene(
            workdir / "scene", seed=0, num_views=12, width=args.size, height=args.size, supersample=1
        ).output_dir
        pipeline = _pipeline(scene, args, device)
        result = {"device": torch.cuda.get_device_name() if args.gpu else "cpu", "threads": args.threads}
        result |= bench_updates(pipeline, args, device, workdir)  # first: it needs views without relevance
        result |= bench_iterations(pipeline, args, device)
    table = Table("measure", "value", title=f"scene editing benchmark ({result['device']})")
    for key, value in result.items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    CONSOLE.print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results["gpu" if args.gpu else "cpu"] = result
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    CONSOLE.print(f"results merged into {args.output}")


if __name__ == "__main__":
    main(tyro.cli(Args))
