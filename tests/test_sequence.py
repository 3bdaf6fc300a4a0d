"""Edits in sequence: "make the cube blue", then "make the sphere green" from that edit's export and run,
with the bundled toy editor on a generated scene; and a base edit run that does not match --data refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from method_configs.relevance_nerf2nerf import nerfacto_tiny, relevance_nerf2nerf_tiny
from relevance_nerf2nerf._testing import exact_capture, in_process_config
from relevance_nerf2nerf.assets import TOY_EDITOR_DIR
from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.nerf.checkpoints import load_checkpoint_file, model_state, resolve_checkpoint
from relevance_nerf2nerf.scenes import generate_scene

pytestmark = pytest.mark.slow


def _config(base, data: Path, output: Path, name: str, iterations: int, **pipeline):
    """A short in-process run with exact capture settings (no pose refinement or appearance embedding)."""
    config = exact_capture(in_process_config(base.config, data, output, "sequence", name, iterations))
    for key, value in pipeline.items():
        setattr(config.pipeline, key, value)
    return config


def _edit(data: Path, output: Path, name: str, base: Path, instruction: str):
    """One pass over the 9 training views from ``base``, one update per iteration: every view is edited once,
    masked by its 2D relevance map (a later pass would take its masks from the relevance field, which these
    few iterations leave untrained)."""
    config = _config(relevance_nerf2nerf_tiny, data, output, name, 9, instruction=instruction,
                     editor_model=str(TOY_EDITOR_DIR), base_checkpoint=base, edit_every=1, edit_steps=10,
                     edit_noise_range=(0.7, 0.98))  # fmt: skip
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer


def _colours(images: torch.Tensor, scene: Path, names: list[str], name: str) -> torch.Tensor:
    """Mean RGB of object ``name``'s pixels (ground-truth masks) over the views, images (N, H, W, 3) uint8."""
    masks = torch.from_numpy(
        np.stack([np.asarray(Image.open(scene / "masks" / name / n)) > 127 for n in names])
    )
    return images[masks].float().mean(dim=0) / 255.0


def test_a_second_instruction_edits_the_first_edit(tmp_path):
    scene = generate_scene(tmp_path / "scene", seed=0, num_views=10).output_dir  # cone, red cube, sphere
    base = _config(nerfacto_tiny, scene, tmp_path, "base", 100)
    trainer = base.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    base_run = Path(trainer.base_dir)

    first = _edit(scene, tmp_path, "cube", base_run, "make the cube blue")
    first.train()
    run_a = Path(first.base_dir)

    # the first edit's run with the original capture as --data: refused in one line at set-up
    mismatch = _config(relevance_nerf2nerf_tiny, scene, tmp_path, "mismatch", 2, instruction="make it green",
                       editor_model=str(TOY_EDITOR_DIR), base_checkpoint=run_a)  # fmt: skip
    with pytest.raises(InvalidInputError, match="differ from --data's training images") as error:
        mismatch.setup(local_rank=0, world_size=1).setup()
    assert "\n" not in str(error.value)

    second = _edit(run_a / "edited_dataset", tmp_path, "sphere", run_a, "make the sphere green")
    weights = model_state(load_checkpoint_file(resolve_checkpoint(run_a))["pipeline"])
    for key, value in second.pipeline.model.state_dict().items():
        if "relevance" not in key and key in weights:  # the first edit's weights, a fresh relevance field
            assert torch.equal(value.cpu(), weights[key].cpu()), key
    second.train()

    datamanager = second.pipeline.datamanager
    names = [Path(f).name for f in datamanager.train_dataparser_outputs.image_filenames]
    capture = torch.from_numpy(np.stack([np.asarray(Image.open(scene / "images" / n)) for n in names]))
    final = datamanager.edited_images.cpu()
    change = {
        name: _colours(final, scene, names, name) - _colours(capture, scene, names, name)
        for name in ("cube", "sphere", "cone")
    }
    cube, sphere = _colours(final, scene, names, "cube"), _colours(final, scene, names, "sphere")
    print(f"cube {cube.tolist()}, sphere {sphere.tolist()}, cone change {change['cone'].tolist()}")
    assert cube[2] > cube[0] + 0.1  # blue, not red: the first edit is carried into the second
    assert sphere[1] > sphere[0] and sphere[1] > sphere[2]  # green, not purple: the second edit
    assert float(change["cube"].abs().max()) > 0.2 and float(change["sphere"].abs().max()) > 0.15
    assert float(change["cone"].abs().max()) < 0.05  # the cone stays as captured
    exported = Image.open(second.base_dir / "edited_dataset" / "images" / names[0])
    assert np.array_equal(np.asarray(exported), final[0].numpy())
