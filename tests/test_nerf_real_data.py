"""Real captured data: LLFF "fern" (20 forward-facing photographs, COLMAP poses) at 252x189, an odd size.

The dataparser and the editable datamanager accept it, the relevance field learns its 2D maps on real
geometry within a few dozen iterations, and one relevance-guided view update (exact test-double editor)
renders the view from its true camera and writes back exactly the expected pixels.
"""

from __future__ import annotations

import copy
import json
import os
import random
from pathlib import Path

import pytest
import torch
from nerfstudio.engine.optimizers import Optimizers

from method_configs.relevance_nerf2nerf import relevance_nerf2nerf_tiny
from relevance_nerf2nerf.diffusion.editor import EditResult, RelevanceResult
from relevance_nerf2nerf.nerf.pipeline import RelevanceNerf2NerfPipeline
from relevance_nerf2nerf.nerf.relevance import RELEVANCE_TARGET

# The shared data folder sits beside the repository (../shared), on developer machines and in CI alike.
SHARED_FERN = Path(__file__).resolve().parents[2] / "shared" / "data" / "llff-fern"
FERN = Path(os.environ.get("RELEVANCE_FERN_DIR", SHARED_FERN))
HEIGHT, WIDTH = 189, 252  # images_2: the dataset's 504x378 halved
TRAIN_ITERS = 60
VIEW = 5

pytestmark = pytest.mark.skipif(
    not (FERN / "images_2").is_dir(), reason=f"LLFF fern not found at {FERN} (set RELEVANCE_FERN_DIR)"
)


def _greenness(image: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) -> (B,1,H,W) in [0, 1]: how much green exceeds red and blue (the fern's leaves)."""
    red, green, blue = image[:, 0:1], image[:, 1:2], image[:, 2:3]
    return ((green - torch.maximum(red, blue)) * 8.0).clamp(0.0, 1.0)


class AutumnEditor:
    """Exact double of RelevanceEditor for "make the fern autumn-coloured": relevance is the greenness of
    the image; the edit swaps red and green (green leaves turn red) where relevance >= tau and pastes
    ``composite_source`` elsewhere. Records the arguments of every edit."""

    def __init__(self):
        self.relevance_calls = 0
        self.edits: list[dict] = []

    def relevance(self, image, instruction, *, t_rel=0.8, iqr_ratio=1.5, num_draws=1, generator=None):
        self.relevance_calls += 1
        pixel = _greenness(image)
        return RelevanceResult(latent=pixel, pixel=pixel)

    def edit(
        self, image, instruction, *, relevance=None, mask_threshold=0.5, composite_source=None, **kwargs
    ):
        self.edits.append(
            {"image": image, "instruction": instruction, "relevance": relevance, "tau": mask_threshold}
            | {"composite_source": composite_source, **kwargs}
        )
        mask = relevance >= mask_threshold
        edited = torch.where(mask, image[:, [1, 0, 2]], composite_source)
        return EditResult(image=edited, relevance=relevance, mask=mask)


@pytest.fixture(scope="module")
def pipeline() -> RelevanceNerf2NerfPipeline:
    config = copy.deepcopy(relevance_nerf2nerf_tiny.config.pipeline)
    config.datamanager.data = FERN
    config.datamanager.dataparser.downscale_factor = 2  # reads images_2/
    config.instruction = "make the fern autumn-coloured"
    random.seed(0)  # nerfstudio draws the cached batch's image order with `random`
    torch.manual_seed(0)
    pipeline = config.setup(device="cpu", test_mode="val")
    pipeline.editor = AutumnEditor()
    return pipeline


def test_llff_fern_loads_with_its_odd_size(pipeline):
    num_frames = len(json.loads((FERN / "transforms.json").read_text())["frames"])
    datamanager = pipeline.datamanager
    assert num_frames == 20
    assert datamanager.num_views + len(datamanager.eval_dataset) == 20  # 18 train + 2 eval (split 0.9)
    assert datamanager.num_views == 18
    cameras = datamanager.train_dataset.cameras
    assert cameras.shape == (18,)
    assert set(cameras.width.flatten().tolist()) == {WIDTH} and set(cameras.height.flatten().tolist()) == {
        HEIGHT
    }
    assert torch.allclose(cameras.cx, torch.tensor(126.0)) and torch.allclose(cameras.cy, torch.tensor(94.5))
    assert torch.allclose(cameras.fx, torch.tensor(407.5657916100737 / 2))
    assert torch.allclose(torch.linalg.det(cameras.camera_to_worlds[:, :, :3]), torch.ones(18), atol=1e-4)
    assert datamanager.edited_images.shape == (18, HEIGHT, WIDTH, 3)
    assert datamanager.relevance_maps.shape == (18, HEIGHT, WIDTH, 1)
    batch = datamanager.train_image_dataloader.cached_collated_batch
    assert batch["image"].shape == batch[RELEVANCE_TARGET].shape[:3] + (3,) == (18, HEIGHT, WIDTH, 3)
    for index in (0, 17):  # dataset order, not batch-slot order
        capture = datamanager.train_dataset[index]["image"]
        assert torch.equal(datamanager.original_image(index)[0].permute(1, 2, 0), capture)


def test_relevance_field_and_one_view_update_on_real_data(pipeline):
    datamanager, editor = pipeline.datamanager, pipeline.editor
    pipeline.prepare_relevance()  # every view's map from its capture (the double: greenness)
    assert editor.relevance_calls == 18 and bool(datamanager.relevance_valid.all())

    trainer_config = relevance_nerf2nerf_tiny.config
    optimizer_configs = copy.deepcopy(trainer_config.optimizers)
    for group in optimizer_configs.values():  # what RelevanceTrainer does for a run of the preset's length
        if group["scheduler"] is not None and group["scheduler"].max_steps is None:
            group["scheduler"].max_steps = trainer_config.max_num_iterations
    optimizers = Optimizers(optimizer_configs, pipeline.get_param_groups())
    pipeline.train()
    for step in range(TRAIN_ITERS):
        _, loss_dict, _ = pipeline.get_train_loss_dict(step)
        optimizers.zero_grad_all()
        sum(loss_dict.values()).backward()
        optimizers.optimizer_step_all()
        optimizers.scheduler_step_all(step)

    bundles = []  # what the update renders: spy on the full-image render of the model
    render_bundle = pipeline.model.get_outputs_for_camera_ray_bundle

    def spy(ray_bundle):
        bundles.append((ray_bundle.camera_indices.clone(), ray_bundle.origins.clone()))
        return render_bundle(ray_bundle)

    pipeline.model.get_outputs_for_camera_ray_bundle = spy
    try:
        assert pipeline.edit_view(VIEW) == VIEW
    finally:
        del pipeline.model.get_outputs_for_camera_ray_bundle

    ((camera_indices, origins),) = bundles
    assert camera_indices.shape == (HEIGHT, WIDTH, 1) and bool((camera_indices == VIEW).all())  # true index
    center = datamanager.train_dataset.cameras.camera_to_worlds[VIEW, :, 3]
    assert torch.allclose(origins, center.expand_as(origins))

    (call,) = editor.edits
    rgb, relevance, original = call["image"], call["relevance"], datamanager.original_image(VIEW)
    assert rgb.shape == (1, 3, HEIGHT, WIDTH) and relevance.shape == (1, 1, HEIGHT, WIDTH)
    assert 0 <= rgb.min() and rgb.max() <= 1 and 0 <= relevance.min() and relevance.max() <= 1
    assert torch.equal(call["condition_image"], original) and torch.equal(call["composite_source"], original)
    assert call["tau"] == 0.5 and call["num_steps"] == 20 and 0.02 <= call["start_noise"] <= 0.98
    psnr = float(-10 * torch.log10(((rgb - original) ** 2).mean()))
    stored = datamanager.relevance_map(VIEW)
    correlation = float(torch.corrcoef(torch.stack([relevance.flatten(), stored.flatten()]))[0, 1])
    baseline = float(((stored - stored.mean()) ** 2).mean())
    mse = float(((relevance - stored) ** 2).mean())
    mask = relevance >= 0.5
    print(f"fern after {TRAIN_ITERS} iterations: render PSNR {psnr:.2f} dB; rendered vs 2D relevance: "
          f"correlation {correlation:.3f}, MSE {mse:.4f} (constant predictor {baseline:.4f}); "
          f"edited {float(mask.float().mean()):.1%} of the view")  # fmt: skip
    assert psnr > 14  # this view, learnt: untrained 12.0 dB, the capture's mean colour 12.4 dB
    assert correlation > 0.5 and mse < 0.75 * baseline  # the relevance field learnt the real maps
    assert 0.01 < float(mask.float().mean()) < 0.5

    expected = torch.where(mask, rgb[:, [1, 0, 2]], original)
    current = datamanager.current_image(VIEW)
    assert (current - expected).abs().max() <= 0.5 / 255 + 1e-6  # exactly the edit, stored as uint8
    outside = ~mask.expand(1, 3, -1, -1)
    assert torch.equal(current[outside], original[outside])  # unedited pixels: the capture, exactly
    batch = datamanager.train_image_dataloader.cached_collated_batch
    slot = int((batch["image_idx"] == VIEW).nonzero())
    assert torch.equal(batch["image"][slot], current[0].permute(1, 2, 0))  # training now sees the edit
    assert datamanager.edit_counts.tolist() == [int(i == VIEW) for i in range(18)]
