"""Every GPU-only benchmark figure in one command (about 8 minutes on one GPU); JSON in benchmarks/results/.

    python benchmarks/gpu.py                        # a CUDA machine: SD-1.5-sized random-weight IP2P, fp16
    python benchmarks/gpu.py --device cpu --smoke   # the same steps at toy sizes on a CPU (checks the script)

Steps, each a subprocess with its own time limit, so a failure or an overrun keeps the other steps' results:
1. ``bench_crop.py --unet sd15 --size 512 --batch-unet sd15 --batch-size 512``: seconds per view update, full
   frame and cropped at a 25 % mask; k = 1, 2, 4 views per UNet call; peak memory of one update without and
   with the memory options -> ``crop.json`` under ``sd15-cuda``;
2. ``bench_scene_edit.py --gpu``: seconds per training iteration at 4096 rays (relevance nerfacto and
   nerfacto) and per pipeline update (render + edit) of a 512 px view -> ``scene_edit.json`` under ``gpu``;
3. (CUDA only) ``gsplat``: gsplat compiles its CUDA kernels on first use (a few minutes on a fresh machine,
   cached afterwards, not counted in the 8 minutes); its own step, so the next step's limit holds the timing
   alone;
4. ``bench_splat_speed.py --preset full --size 512``: nerfstudio's splatfacto as the base, then
   relevance-splatfacto on 12 views at 512 px from 500k Gaussians: seconds per edit iteration, seconds per
   pipeline view update (render + bookkeeping, the editor kept out), peak GPU memory of the base, the edit and
   the updates -> ``splat_speed.json`` under ``cuda-512px-full``. The base runs only 100 iterations: it only
   has to exist (the edit continues as from a finished splatfacto run);
5. the projection of a full scene edit, 60 views at 512 px, 4000 iterations, one view update per 10
   iterations (400 view updates): iterations x s/iteration + updates x (render overhead + edit), for
   full-frame updates (the paper, Instruct-NeRF2NeRF's cost), cropped ones at a 25 % mask and batched ones
   (k = 4: 100 events of 4 views) -> ``gpu.json`` under ``projection`` (nerfacto: the scene step's iteration
   and update overhead) and ``splat_projection`` (splats: the splat step's, with its Gaussian count and peak
   memory); each with the editor's seconds from ``crop.json``, the inputs it used and the steps that failed.
``gpu.json`` is rewritten after every step, so a run stopped from outside keeps what the finished steps
measured; ``--only`` runs some of the steps (e.g. ``--only gsplat splat``: the splat figures alone), the
projections then reading whatever step JSON the output folder holds.
``--smoke`` writes into a temporary folder unless ``--output-dir`` is given, never into benchmarks/results/;
its splat step runs the tiny presets (any device) at 32 px.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tyro

from relevance_nerf2nerf.outputs import write_json

HERE = Path(__file__).parent


@dataclass
class Args:
    device: str = "cuda"
    """cuda (the real run) or cpu (with --smoke)."""
    smoke: bool = False
    """Toy sizes, one repeat: checks that every step runs and the JSON is written (minutes on a CPU)."""
    output_dir: Path | None = None
    """Where the JSON files go (default: benchmarks/results/, or a temporary folder with --smoke)."""
    precision: str = "fp16"
    """Editor precision on the GPU."""
    views: int = 60
    """Projection: training views of the scene."""
    iterations: int = 4000
    """Projection: editing iterations."""
    edit_every: int = 10
    """Projection: iterations per view update (the paper's n_edit)."""
    batch: int = 4
    """Projection: views per batched edit event."""
    only: tuple[str, ...] = ()
    """Run only these steps (default: all), e.g. ``--only gsplat splat``; the projections read whatever step
    JSON the output folder holds."""


def splat_settings(args: Args) -> tuple[str, int]:
    """The splat step's preset and view size: the full presets at 512 px, or the tiny ones at 32 px with
    ``--smoke``.

    Args:
        args (Args): the command line.
    """
    return ("tiny", 32) if args.smoke else ("full", 512)


def splat_key(args: Args) -> str:
    """The key the splat step's record is merged under in ``splat_speed.json``:
    ``bench_splat_speed.record_key`` of the step's device, size and preset.

    Args:
        args (Args): the command line.
    """
    preset, size = splat_settings(args)
    return f"{args.device}-{size}px" + ("-full" if preset == "full" else "")


def steps(args: Args, out: Path) -> list[tuple[str, list[str], int]]:
    """(name, command, time limit in seconds) of the benchmark steps.

    Args:
        args (Args): the command line.
        out (Path): the folder the steps write their JSON into.
    """
    py = sys.executable
    preset, size = splat_settings(args)
    splat = ["--preset", preset, "--device", args.device, "--size", str(size)]
    if args.smoke:
        crop = [
            "--unet",
            "tiny",
            "--size",
            "64",
            "--batch-unet",
            "tiny",
            "--batch-size",
            "32",
            "--steps",
            "2",
        ]
        crop += ["--repeats", "1", "--quality-samples", "0", "--precision", "fp32"]
        scene = ["--iterations", "2", "--updates", "1", "--size", "32", "--rays", "256"]
        splat += ["--num-views", "4", "--num-points", "200", "--base-iterations", "20"]
        splat += ["--edit-iterations", "6", "--timed-iterations", "3", "--timed-updates", "2"]
    else:
        crop = ["--unet", "sd15", "--size", "512", "--batch-unet", "sd15", "--batch-size", "512"]
        crop += ["--repeats", "3", "--quality-samples", "0", "--precision", args.precision]
        scene = ["--gpu", "--iterations", "20", "--updates", "2", "--precision", args.precision]
        splat += ["--num-views", "12", "--supersample", "1", "--num-points", "500000"]
        splat += ["--base-iterations", "100", "--edit-iterations", "300", "--timed-iterations", "200"]
        splat += ["--timed-updates", "5"]
    crop += ["--device", args.device, "--output", str(out / "crop.json")]
    scene += ["--output", str(out / "scene_edit.json")]
    splat += ["--output", str(out / "splat_speed.json")]
    listed = [
        ("crop", [py, str(HERE / "bench_crop.py"), *crop], 270),
        ("scene", [py, str(HERE / "bench_scene_edit.py"), *scene], 180),
    ]
    if not args.smoke:
        listed.append(("gsplat", [py, "-c", "from gsplat.cuda._backend import _C"], 300))
    listed.append(("splat", [py, str(HERE / "bench_splat_speed.py"), *splat], 150))
    return listed


def _edit_projection(args: Args, crop: dict, iteration_s: float, overhead: float) -> dict:
    """The projected edit from one iteration's and one update's seconds beyond the editor's, and the editor's
    seconds per update in ``crop`` (full frame, cropped, batched)."""
    updates = args.iterations // args.edit_every
    edit_full = crop["speed"]["full_s"]
    batched_call = crop["batched"]["seconds_per_call"][str(args.batch)]
    training = args.iterations * iteration_s
    variants = {
        "full_frame": updates * (overhead + edit_full),
        "cropped_25pct_mask": updates * (overhead + crop["speed"]["cropped_s"]),
        f"batched_k{args.batch}": updates // args.batch * (args.batch * overhead + batched_call),
    }
    minutes = {name: round((training + edits) / 60, 2) for name, edits in variants.items()}
    return {
        "scene": f"{args.views} views at 512 px, {args.iterations} iterations, one view update per "
        f"{args.edit_every} iterations ({updates} view updates)",
        "training_s": round(training, 1),
        "update_overhead_s": round(overhead, 3),
        "edit_s": {name: round(edits, 1) for name, edits in variants.items()},
        "total_minutes": minutes,
        "speedup_over_full_frame": {name: round(minutes["full_frame"] / m, 3) for name, m in minutes.items()},
    }


def project(args: Args, crop: dict, scene: dict) -> dict:
    """Projected wall time of a full nerfacto scene edit from the measured seconds per iteration and per
    update.

    Args:
        args (Args): the projected edit's size (views, iterations, edit_every, batch).
        crop (dict): ``crop.json``'s record (the editor's seconds per update).
        scene (dict): ``scene_edit.json``'s record (seconds per iteration and per pipeline update).
    """
    edit_full = crop["speed"]["full_s"]
    # what a pipeline update costs beyond the edit itself: the render and the bookkeeping
    overhead = max(scene["seconds_per_update_revisit"] - edit_full, 0.0)
    return _edit_projection(args, crop, scene["relevance_ms_per_iteration"] / 1000, overhead)


def project_splat(args: Args, crop: dict, splat: dict) -> dict:
    """Projected wall time of a relevance-splatfacto edit of the same scene size: iterations x seconds per
    edit iteration + updates x (update overhead + edit), where the overhead is the measured view update with
    the editor kept out (render + bookkeeping) and the edit is ``crop.json``'s; plus the Gaussian count and
    the peak GPU memory of each stage.

    Args:
        args (Args): the projected edit's size (views, iterations, edit_every, batch).
        crop (dict): ``crop.json``'s record (the editor's seconds per update).
        splat (dict): ``splat_speed.json``'s record (``edit``, ``update`` and ``base`` stages).
    """
    edit, update = splat["edit"], splat["update"]
    result = _edit_projection(
        args, crop, edit["wall_seconds_per_iteration_median"], update["seconds_per_update_median"]
    )
    result["gaussians"] = edit["gaussians_at_end"]
    result["peak_gpu_mib"] = {stage: splat[stage]["peak_gpu_mib"] for stage in ("base", "edit", "update")}
    return result


def _projected(
    compute: Callable[..., dict], inputs: dict, errors: dict, names: tuple[str, ...]
) -> dict | str:
    """``compute`` of the named inputs, or why it could not be computed."""
    missing = [name for name in names if name not in inputs]
    if missing:
        return "not computed: " + "; ".join(errors[name] for name in missing)
    try:
        return compute(*(inputs[name] for name in names))
    except (KeyError, TypeError) as err:
        return f"not computed: {type(err).__name__}: {err}"


def write_summary(args: Args, out: Path, record: dict) -> dict:
    """Add the inputs the step JSON files in ``out`` hold and the two projections to ``record`` and write it
    whole into ``out / "gpu.json"``; a projection whose inputs are missing says why instead.

    Args:
        args (Args): the command line.
        out (Path): the folder of the step JSON files.
        record (dict): the run's record so far (its steps).
    """
    crop_key = ("tiny-" if args.smoke else "sd15-") + args.device.split(":")[0]
    sources = {
        "crop": ("crop.json", crop_key),
        "scene": ("scene_edit.json", "cpu" if args.smoke else "gpu"),
        "splat": ("splat_speed.json", splat_key(args)),
    }
    inputs: dict = {}
    errors: dict = {}
    for name, (file, key) in sources.items():
        try:
            inputs[name] = json.loads((out / file).read_text())[key]
        except (OSError, KeyError, json.JSONDecodeError) as err:
            errors[name] = f"{type(err).__name__}: {err}"
    record["inputs"] = inputs
    record["projection"] = _projected(lambda c, s: project(args, c, s), inputs, errors, ("crop", "scene"))
    record["splat_projection"] = _projected(
        lambda c, s: project_splat(args, c, s), inputs, errors, ("crop", "splat")
    )
    write_json(out / "gpu.json", record)
    return record


def main(args: Args) -> int:
    """Run the steps, writing ``gpu.json`` after each one (a run stopped from outside keeps what the finished
    steps measured); 0 when every step succeeded, 2 on an unknown ``--only`` step.

    Args:
        args (Args): the command line.
    """
    if args.smoke:
        out = args.output_dir or Path(tempfile.mkdtemp(prefix="gpu-smoke-"))
    else:
        out = args.output_dir or HERE / "results"
    listed = steps(args, out)
    unknown = sorted(set(args.only) - {name for name, _, _ in listed})
    if unknown:
        names = ", ".join(name for name, _, _ in listed)
        print(
            f"gpu.py: error: --only {' '.join(unknown)}: no such step; the steps are {names}", file=sys.stderr
        )
        return 2
    out.mkdir(parents=True, exist_ok=True)
    record: dict = {"smoke": args.smoke, "device": args.device, "steps": {}}
    for name, command, limit in listed:
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        try:
            done = subprocess.run(command, timeout=limit, check=False)
            status = "ok" if done.returncode == 0 else f"exit code {done.returncode}"
        except subprocess.TimeoutExpired:
            status = f"timed out after {limit} s"
        record["steps"][name] = {"status": status, "seconds": round(time.perf_counter() - start, 1)}
        print(f"[gpu.py] {name}: {status}", flush=True)
        write_summary(args, out, record)
    write_summary(args, out, record)
    print(json.dumps({k: record[k] for k in ("projection", "splat_projection")}, indent=2))
    print(f"[gpu.py] written to {out / 'gpu.json'}")
    return 0 if all(s["status"] == "ok" for s in record["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main(tyro.cli(Args)))
