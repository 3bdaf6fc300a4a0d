"""Benchmark: two instructions in sequence on a generated scene, measured on the NeRF's renders.

1. Generate the demo's scene (seed 0: an orange cone, a red cube, a purple sphere; 10 views of 64x64) and
   train ``nerfacto-tiny`` on it (``--base-iterations``), with exact capture settings (no pose refinement, no
   appearance embedding).
2. Edit A: ``relevance-nerf2nerf-tiny`` "make the cube blue" from the base (``--edit-iterations``).
3. Edit B: "make the sphere green" with ``--data <A>/edited_dataset --pipeline.base-checkpoint <A>``.
4. Render every training view after each stage and report each object's mean colour inside its ground-truth
   mask (base, after A, after B); written to ``benchmarks/results/sequence.json``.

    python benchmarks/bench_sequence.py --base-iterations 1000 --edit-iterations 600
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro
from PIL import Image

RESULTS = Path(__file__).parent / "results" / "sequence.json"
OBJECTS = ("cube", "sphere", "cone")


@dataclass
class Options:
    """Lengths of the three runs."""

    base_iterations: int = 1000
    """Iterations of the nerfacto-tiny base."""
    edit_iterations: int = 600
    """Iterations of each edit (a view update every 10)."""


def _train(method, data: Path, output: Path, name: str, iterations: int, **pipeline):
    from relevance_nerf2nerf._testing import exact_capture, in_process_config, release_event_writers

    config = exact_capture(in_process_config(method.config, data, output, "sequence", name, iterations))
    for key, value in pipeline.items():
        setattr(config.pipeline, key, value)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    release_event_writers()
    return trainer


@torch.no_grad()
def _object_colours(pipeline, scene: Path) -> dict[str, list[float]]:
    """Mean rendered RGB inside each object's ground-truth mask, over the training views."""
    names = [Path(f).name for f in pipeline.datamanager.train_dataparser_outputs.image_filenames]
    cameras = pipeline.datamanager.train_dataset.cameras.to(pipeline.device)
    pipeline.model.eval()
    renders = []
    for i in range(len(names)):
        rays = cameras.generate_rays(camera_indices=i, keep_shape=True)
        renders.append(pipeline.model.get_outputs_for_camera_ray_bundle(rays)["rgb"].clamp(0, 1).cpu())
    renders = torch.stack(renders)
    colours = {}
    for name in OBJECTS:
        masks = np.stack([np.asarray(Image.open(scene / "masks" / name / n)) > 127 for n in names])
        colours[name] = [round(v, 4) for v in renders[torch.from_numpy(masks)].mean(dim=0).tolist()]
    return colours


def main(options: Options) -> dict:
    """Run the three stages and measure the renders after each.

    Args:
        options (Options): the runs' lengths.
    """
    from method_configs.relevance_nerf2nerf import nerfacto_tiny, relevance_nerf2nerf_tiny
    from relevance_nerf2nerf.assets import TOY_EDITOR_DIR
    from relevance_nerf2nerf.scenes import generate_scene

    torch.set_num_threads(1)
    result: dict = {"options": vars(options)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        scene = generate_scene(root / "scene", seed=0, num_views=10).output_dir
        base = _train(nerfacto_tiny, scene, root, "base", options.base_iterations)
        edit = dict(editor_model=str(TOY_EDITOR_DIR))
        base_run = Path(base.base_dir)
        first = _train(relevance_nerf2nerf_tiny, scene, root, "cube", options.edit_iterations,
                       instruction="make the cube blue", base_checkpoint=base_run, **edit)  # fmt: skip
        run_a = Path(first.base_dir)
        second = _train(relevance_nerf2nerf_tiny, run_a / "edited_dataset", root, "sphere",
                        options.edit_iterations, instruction="make the sphere green", base_checkpoint=run_a,
                        **edit)  # fmt: skip
        result["base"] = _object_colours(base.pipeline, scene)
        result["after_a"] = _object_colours(first.pipeline, scene)
        result["after_b"] = _object_colours(second.pipeline, scene)
    from relevance_nerf2nerf.outputs import write_json

    write_json(RESULTS, result)  # the results file is replaced whole
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(tyro.cli(Options))
    sys.exit(0)
