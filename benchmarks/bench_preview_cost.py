"""Benchmark: relevance-preview's cost estimate against a real edit of the same scene on the same machine.

1. Generate a scene (seed 0, 24 views of 64x64) and run ``relevance-preview`` on it with the bundled toy
   editor and the ``relevance-nerf2nerf-tiny`` preset for an edit of ``--iterations`` iterations.
2. Run that edit (in-process ``ns-train relevance-nerf2nerf-tiny``, the same editor, IQR ratio and length),
   timing every dataset update (``RelevanceNerf2NerfPipeline.edit_views``: render + relevance-guided edit;
   the first update, which also loads the editor, is left out of the median) and the whole run.
3. Print both and merge them into ``benchmarks/results/preview_cost.json``: the preview's seconds per update
   (full frame, what the preset runs) and total against the measured median and total.

    python benchmarks/bench_preview_cost.py --iterations 100
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

RESULTS = Path(__file__).parent / "results" / "preview_cost.json"


@dataclass
class Options:
    """What to compare."""

    iterations: int = 100
    """Iterations of the edit (one view update every 10)."""
    seed: int = 0
    """Seed of the generated scene and of the edit."""


def main(options: Options) -> dict:
    """Run the preview and the edit; return (and save) both figures.

    Args:
        options (Options): the benchmark's settings.
    """
    from nerfstudio.scripts.train import train_loop

    from method_configs.relevance_nerf2nerf import relevance_nerf2nerf_tiny
    from relevance_nerf2nerf._testing import in_process_config, release_event_writers
    from relevance_nerf2nerf.assets import TOY_EDITOR_DIR, TOY_EDITOR_IQR_RATIO
    from relevance_nerf2nerf.nerf.pipeline import RelevanceNerf2NerfPipeline
    from relevance_nerf2nerf.preview import PreviewSettings, run_preview
    from relevance_nerf2nerf.scenes import generate_scene

    torch.set_num_threads(1)
    instruction = "make the cube blue"
    with tempfile.TemporaryDirectory() as tmp:
        scene = generate_scene(Path(tmp) / "scene", seed=options.seed, num_views=24)
        settings = PreviewSettings(
            data=scene.output_dir, instruction=(instruction,), output_dir=Path(tmp) / "preview",
            editor_model=str(TOY_EDITOR_DIR), method="relevance-nerf2nerf-tiny", device="cpu",
            edit_iterations=options.iterations, seed=options.seed,
        )  # fmt: skip
        start = time.perf_counter()
        run_preview(settings)
        preview_s = time.perf_counter() - start
        record = json.loads((settings.output_dir / "preview.json").read_text())
        estimate = record["instructions"][instruction]["cost"]

        config = in_process_config(relevance_nerf2nerf_tiny.config, scene.output_dir, Path(tmp) / "runs",
                                   "bench", "edit", options.iterations)  # fmt: skip
        config.pipeline.instruction = instruction
        config.pipeline.editor_model = str(TOY_EDITOR_DIR)
        config.pipeline.relevance_iqr_ratio = TOY_EDITOR_IQR_RATIO
        config.pipeline.seed = options.seed
        updates: list[float] = []
        original = RelevanceNerf2NerfPipeline.edit_views

        def timed(self, *args, **kwargs):
            begin = time.perf_counter()
            result = original(self, *args, **kwargs)
            updates.append(time.perf_counter() - begin)
            return result

        RelevanceNerf2NerfPipeline.edit_views = timed
        try:
            start = time.perf_counter()
            train_loop(local_rank=0, world_size=1, config=config)
            edit_s = time.perf_counter() - start
        finally:
            RelevanceNerf2NerfPipeline.edit_views = original
            release_event_writers()
    measured = statistics.median(updates[1:])
    result = {
        "iterations": options.iterations,
        "preview_s": preview_s,
        "estimate_seconds_per_update": estimate["seconds_per_update_full_frame"],
        "measured_seconds_per_update_median": measured,
        "ratio_estimate_over_measured": estimate["seconds_per_update_full_frame"] / measured,
        "estimate_total_s": estimate["total_s"],
        "measured_total_s": edit_s,
        "measured_updates": len(updates),
        "first_update_s (loads the editor)": updates[0],
        "threads": torch.get_num_threads(),
    }
    from relevance_nerf2nerf.outputs import write_json

    write_json(RESULTS, result)  # the results file is replaced whole
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(tyro.cli(Options))
    sys.exit(0)
