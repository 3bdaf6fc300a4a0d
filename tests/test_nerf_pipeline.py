"""Scene editing in-process (CPU): relevance field isolation, relevance-guided updates with an exact
test-double editor, checkpoints, resume and bad input. One base nerfacto-tiny is trained per module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from PIL import Image

from method_configs.relevance_nerf2nerf import nerfacto_tiny, relevance_nerf2nerf_tiny
from relevance_nerf2nerf._testing import in_process_config
from relevance_nerf2nerf.diffusion.editor import EditResult, RelevanceResult
from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.nerf.checkpoints import load_base_checkpoint, resolve_checkpoint
from relevance_nerf2nerf.nerf.pipeline import RelevanceNerf2NerfPipeline
from relevance_nerf2nerf.nerf.relevance import RELEVANCE_TARGET, RELEVANCE_VALID, masked_mse
from relevance_nerf2nerf.scenes import generate_scene

OBJECT = "cube"  # the planted object the double recolours (seed 0 scene: a red cube)
INSTRUCTION = "make the cube blue"


class RecolourEditor:
    """Exact double of RelevanceEditor. Relevance: chromaticity match with the planted object's colour.
    Edit: recolour the matching pixels of the condition image to ``target`` (shading kept) and, like IP2P,
    shift every other pixel by ``drift``; then keep the edit only where relevance >= tau and paste
    ``composite_source`` elsewhere."""

    def __init__(self, object_rgb, target_rgb=(0.1, 0.2, 0.9), drift: float = 0.25, tolerance: float = 0.3):
        rgb = torch.tensor(object_rgb)
        self.chroma = (rgb / rgb.sum()).view(1, 3, 1, 1)
        self.target = torch.tensor(target_rgb).view(1, 3, 1, 1)
        self.drift, self.tolerance = drift, tolerance
        self.calls = {"relevance": 0, "edit": 0}

    def _relevance(self, image: torch.Tensor) -> torch.Tensor:
        chroma = image / image.sum(1, keepdim=True).clamp(min=1e-6)
        return (1 - (chroma - self.chroma).abs().sum(1, keepdim=True) / self.tolerance).clamp(0, 1)

    def relevance(self, image, instruction, *, t_rel=0.8, iqr_ratio=1.5, num_draws=1, generator=None):
        self.calls["relevance"] += 1
        pixel = self._relevance(image)
        return RelevanceResult(latent=pixel, pixel=pixel)

    def edit(
        self,
        image,
        instruction,
        *,
        condition_image=None,
        relevance=None,
        mask_threshold=0.5,
        text_guidance=7.5,
        image_guidance=1.5,
        num_steps=100,
        start_noise=1.0,
        composite_source=None,
        t_rel=0.8,
        generator=None,
        progress=False,
    ):
        self.calls["edit"] += 1
        condition = image if condition_image is None else condition_image
        source = image if composite_source is None else composite_source
        relevance = self._relevance(condition) if relevance is None else relevance
        recoloured = image.mean(1, keepdim=True) * 3 * self.target / self.target.sum()
        edited = torch.where(self._relevance(condition) >= 0.5, recoloured, image + self.drift).clamp(0, 1)
        mask = relevance >= mask_threshold
        return EditResult(image=torch.where(mask, edited, source), relevance=relevance, mask=mask)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    info = generate_scene(tmp_path_factory.mktemp("scene"), seed=0, num_views=10, width=32, height=32)
    return info.output_dir


def _config(base: TrainerConfig, scene: Path, output: Path, name: str, iterations: int) -> TrainerConfig:
    config = in_process_config(base, scene, output, "test", name, iterations)
    config.pipeline.datamanager.train_num_rays_per_batch = 256
    return config


def _editing_config(scene: Path, output: Path, name: str, iterations: int, **pipeline) -> TrainerConfig:
    config = _config(relevance_nerf2nerf_tiny.config, scene, output, name, iterations)
    config.pipeline.instruction = INSTRUCTION
    config.pipeline.edit_every = 5
    for key, value in pipeline.items():
        setattr(config.pipeline, key, value)
    return config


def _train(config: TrainerConfig, editor=None) -> Trainer:
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    if editor is not None:
        trainer.pipeline.editor = editor
    trainer.train()
    return trainer


def _object(scene: Path) -> dict:
    objects = json.loads((scene / "scene.json").read_text())["spec"]["objects"]
    return next(obj for obj in objects if obj["name"] == OBJECT)


def _object_masks(scene: Path, pipeline) -> list[torch.Tensor]:
    names = [Path(f).name for f in pipeline.datamanager.train_dataparser_outputs.image_filenames]
    return [torch.from_numpy(np.asarray(Image.open(scene / "masks" / OBJECT / n)) > 0) for n in names]


@pytest.fixture(scope="module")
def base_run(scene, tmp_path_factory) -> Path:
    """A nerfacto-tiny base, trained for real through nerfstudio's Trainer; returns its run folder."""
    output = tmp_path_factory.mktemp("runs")
    trainer = _train(_config(nerfacto_tiny.config, scene, output, "base", 150))
    return Path(trainer.base_dir)


@pytest.fixture(scope="module")
def fresh_pipeline(scene) -> RelevanceNerf2NerfPipeline:
    config = _editing_config(scene, Path("/nonexistent"), "unused", 1).pipeline
    torch.manual_seed(0)
    return config.setup(device="cpu", test_mode="val")


# --- the relevance field ---------------------------------------------------------------------------------
def test_relevance_loss_reaches_only_the_relevance_head(fresh_pipeline):
    pipeline = fresh_pipeline
    pipeline.train()
    relevance = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    pipeline.datamanager.set_relevance(0, relevance)
    ray_bundle, batch = pipeline.datamanager.next_train(0)
    assert batch[RELEVANCE_VALID].any() and not batch[RELEVANCE_VALID].all()
    groups = pipeline.get_param_groups()
    outputs = pipeline.model(ray_bundle)
    for group in groups.values():
        for p in group:
            p.grad = None
    pipeline.model.relevance_loss(outputs, batch).backward()
    for name in ("proposal_networks", "fields", "camera_opt"):
        for p in groups[name]:
            assert p.grad is None or torch.count_nonzero(p.grad) == 0, name
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in groups["relevance"])
    assert not {id(p) for p in groups["relevance"]} & {id(p) for p in groups["fields"]}


def test_rgb_loss_does_not_train_the_relevance_head(fresh_pipeline):
    pipeline = fresh_pipeline
    pipeline.train()
    ray_bundle, batch = pipeline.datamanager.next_train(0)
    head = list(pipeline.model.field.relevance_head.parameters())
    for p in head:
        p.grad = None
    outputs = pipeline.model(ray_bundle)
    losses = pipeline.model.get_loss_dict(outputs, batch, pipeline.model.get_metrics_dict(outputs, batch))
    assert "relevance_loss" in losses
    sum(value for name, value in losses.items() if name != "relevance_loss").backward()
    assert all(p.grad is None for p in head)


def test_relevance_is_rendered_in_eval_mode_within_unit_range(fresh_pipeline):
    pipeline = fresh_pipeline
    pipeline.eval()
    camera = pipeline.datamanager.train_dataset.cameras[0:1]
    outputs = pipeline.model.get_outputs_for_camera(camera)
    relevance, accumulation = outputs["relevance"], outputs["accumulation"]
    assert relevance.shape == (32, 32, 1)
    assert relevance.min() >= 0 and relevance.max() <= 1
    assert torch.all(relevance <= accumulation + 1e-5)  # sum w_i r_i <= sum w_i for r_i in [0, 1]
    metrics, images = pipeline.model.get_image_metrics_and_images(outputs, {"image": torch.rand(32, 32, 3)})
    assert "psnr" in metrics and "lpips" not in metrics  # LPIPS off in the tiny preset: no AlexNet download
    assert images["relevance"].shape == (32, 32, 3)
    pipeline.train()


def test_masked_mse_ignores_invalid_rays():
    prediction = torch.tensor([[0.0], [1.0], [0.5]])
    target = torch.tensor([[1.0], [1.0], [0.0]])
    valid = torch.tensor([[True], [True], [False]])
    assert masked_mse(prediction, target, valid).item() == pytest.approx(0.5)
    assert masked_mse(prediction, target, torch.zeros_like(valid)).item() == 0.0


def test_rays_carry_their_views_relevance(fresh_pipeline):
    datamanager = fresh_pipeline.datamanager
    datamanager.set_relevance(3, torch.full((1, 1, 32, 32), 0.6))
    ray_bundle, batch = datamanager.next_train(0)
    views = ray_bundle.camera_indices.flatten()
    assert (views == 3).any()
    stored = torch.tensor(153 / 255)  # 0.6 stored as uint8
    assert torch.all(batch[RELEVANCE_TARGET].flatten()[views == 3] == stored)
    assert torch.equal(batch[RELEVANCE_VALID].flatten(), datamanager.relevance_valid[views])


def test_viewer_controls_apply_to_the_next_edit(fresh_pipeline):
    pipeline = fresh_pipeline
    pipeline.viewer_tau.value = 0.25
    pipeline.viewer_instruction.value = "make the cube green"
    try:
        settings = pipeline.current_settings()
        assert settings["mask_threshold"] == 0.25 and settings["instruction"] == "make the cube green"
        pipeline.viewer_instruction.value = "  "
        with pytest.raises(InvalidInputError, match="instruction"):
            pipeline.current_settings()
    finally:
        pipeline.viewer_tau.value = pipeline.config.mask_threshold
        pipeline.viewer_instruction.value = pipeline.config.instruction


def test_relevance_maps_use_the_configured_iqr_ratio(fresh_pipeline, scene, monkeypatch):
    seen = []

    class Recording(RecolourEditor):
        def relevance(self, image, instruction, **settings):
            seen.append(settings)
            return super().relevance(image, instruction, **settings)

    monkeypatch.setattr(fresh_pipeline.config, "relevance_iqr_ratio", 2.0)
    fresh_pipeline.editor = Recording(_object(scene)["rgb"])
    try:
        fresh_pipeline.compute_relevance(1)
    finally:
        del fresh_pipeline.editor  # back to the lazily loaded default
    assert [s["iqr_ratio"] for s in seen] == [2.0]
    assert fresh_pipeline.datamanager.has_relevance(1)


# --- bad input -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("instruction", " ", "instruction"),
        ("mask_threshold", 1.5, "mask-threshold"),
        ("edit_noise_range", (0.9, 0.1), "edit-noise-range"),
        ("relevance_iqr_ratio", 0.0, "relevance-iqr-ratio"),
        ("relevance_iqr_ratio", float("nan"), "relevance-iqr-ratio"),
    ],
)
def test_bad_pipeline_options_fail_at_construction(scene, option, value, message):
    config = _editing_config(scene, Path("/nonexistent"), "unused", 1, **{option: value}).pipeline
    with pytest.raises(InvalidInputError, match=message):
        config.setup(device="cpu", test_mode="val")


def test_mixed_image_sizes_are_refused(scene, tmp_path):
    mixed = tmp_path / "mixed"
    (mixed / "images").mkdir(parents=True)
    transforms = json.loads((scene / "transforms.json").read_text())
    intrinsics = {key: transforms.pop(key) for key in ("fl_x", "fl_y", "cx", "cy", "w", "h")}
    for i, frame in enumerate(transforms["frames"]):
        image = Image.open(scene / frame["file_path"])
        size = 24 if i == 0 else 32
        frame.update(intrinsics, w=size, h=size, cx=size / 2, cy=size / 2)
        image.resize((size, size)).save(mixed / frame["file_path"])
    (mixed / "transforms.json").write_text(json.dumps(transforms))
    config = _editing_config(mixed, Path("/nonexistent"), "unused", 1).pipeline
    with pytest.raises(InvalidInputError, match="different sizes"):
        config.setup(device="cpu", test_mode="val")


def test_checkpoint_from_another_scene_is_refused(fresh_pipeline, tmp_path):
    checkpoint = tmp_path / "step-000000001.ckpt"
    appearance = {"_model.field.embedding_appearance.embedding.weight": torch.zeros(4, 32)}
    torch.save({"step": 1, "pipeline": appearance}, checkpoint)
    with pytest.raises(InvalidInputError, match="4 training views, this dataset has 9"):
        load_base_checkpoint(fresh_pipeline.model, tmp_path, fresh_pipeline.datamanager.num_views)
    state = {"datamanager.edited_images": torch.zeros(4, 32, 32, 3, dtype=torch.uint8)}
    with pytest.raises(InvalidInputError, match="another scene"):
        fresh_pipeline.load_state_dict(state)
    with pytest.raises(InvalidInputError, match="no nerfstudio checkpoint"):
        resolve_checkpoint(tmp_path / "missing")


# --- relevance-guided editing with the exact double ---------------------------------------------------------
@pytest.fixture(scope="module")
def edit_runs(scene, base_run, tmp_path_factory) -> dict[float, Trainer]:
    """The same edit with tau = 0.5 (relevance-guided) and tau = 0 (Instruct-NeRF2NeRF), 12 updates each."""
    output = tmp_path_factory.mktemp("edits")
    runs = {}
    for tau in (0.5, 0.0):
        config = _editing_config(
            scene,
            output,
            f"tau{tau}",
            60,
            mask_threshold=tau,
            base_checkpoint=base_run,
            relevance_up_front=True,
            relevance_warmup_iters=30,
        )
        runs[tau] = _train(config, RecolourEditor(_object(scene)["rgb"]))
    return runs


def test_relevance_guided_edit_keeps_the_background(scene, edit_runs):
    results = {}
    for tau, trainer in edit_runs.items():
        pipeline = trainer.pipeline
        datamanager = pipeline.datamanager
        assert datamanager.edit_counts.sum() == 12 and datamanager.edit_counts.min() >= 1  # every view edited
        assert pipeline.editor.calls == {"relevance": 9, "edit": 12}  # maps once per view, from the captures
        outside_dataset, outside_render, object_change = [], [], []
        for i, mask in enumerate(_object_masks(scene, pipeline)):
            original = datamanager.original_image(i)[0].permute(1, 2, 0)
            current = datamanager.current_image(i)[0].permute(1, 2, 0)
            render = pipeline.render_view(i)[0][0].permute(1, 2, 0)
            outside_dataset.append((current - original)[~mask] ** 2)
            outside_render.append((render - original)[~mask] ** 2)
            object_change.append((render - original)[mask].abs())
        psnr = {
            name: float(-10 * torch.log10(torch.cat(errors).mean()))
            for name, errors in (("dataset", outside_dataset), ("render", outside_render))
        }
        results[tau] = {**psnr, "object_change": float(torch.cat(object_change).mean())}
        print(
            f"tau={tau}: PSNR outside the object, edited images {psnr['dataset']:.2f} dB, renders "
            f"{psnr['render']:.2f} dB; mean |change| on the object {results[tau]['object_change']:.3f}"
        )
    guided, plain = results[0.5], results[0.0]
    assert guided["dataset"] > plain["dataset"] + 15
    assert guided["render"] > plain["render"] + 6
    assert guided["object_change"] > 0.05  # the cube was recoloured in the NeRF too


def test_edited_dataset_is_exported_as_a_nerfstudio_dataset(edit_runs):
    trainer = edit_runs[0.5]
    export = Path(trainer.base_dir) / "edited_dataset"
    parser = NerfstudioDataParserConfig(data=export).setup()  # the capture's frames and split
    outputs = parser.get_dataparser_outputs("train")
    datamanager = trainer.pipeline.datamanager
    assert len(outputs.image_filenames) == datamanager.num_views
    for i in range(datamanager.num_views):
        name = Path(datamanager.train_dataparser_outputs.image_filenames[i]).stem + ".png"
        saved = torch.from_numpy(np.asarray(Image.open(export / "images" / name)))
        assert torch.equal(saved, datamanager.edited_images[i])
        assert (export / "relevance" / name).is_file()


def test_resume_continues_the_edit(scene, base_run, tmp_path):
    first = _train(
        _editing_config(scene, tmp_path, "first", 30, base_checkpoint=base_run),
        RecolourEditor(_object(scene)["rgb"]),
    )
    saved = first.pipeline.datamanager
    assert int(saved.edits_done) == 6  # steps 0, 5, ..., 25
    checkpoint = resolve_checkpoint(first.base_dir)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)  # as ns-render on torch >= 2.6
    assert torch.equal(state["pipeline"]["datamanager.edited_images"], saved.edited_images)

    config = _editing_config(scene, tmp_path, "resumed", 10, base_checkpoint=base_run)
    config.load_dir, config.total_iterations = checkpoint.parent, 40  # the plan of 30, extended by 10
    resumed = config.setup(local_rank=0, world_size=1)
    resumed.setup()  # loads the checkpoint: the edited views must come back, not the captures
    datamanager = resumed.pipeline.datamanager
    assert torch.equal(datamanager.edited_images, saved.edited_images)
    assert torch.equal(datamanager.relevance_valid, saved.relevance_valid)
    assert torch.equal(datamanager.edit_counts, saved.edit_counts)
    edited = [i for i in range(datamanager.num_views) if saved.edit_counts[i] > 0]
    assert not torch.equal(datamanager.current_image(edited[0]), datamanager.original_image(edited[0]))
    batch = datamanager.train_image_dataloader.cached_collated_batch
    slot = int((batch["image_idx"] == edited[0]).nonzero())
    assert torch.equal(batch["image"][slot], datamanager.edited_images[edited[0]].float() / 255)
    resumed.pipeline.editor = RecolourEditor(_object(scene)["rgb"])
    resumed.train()
    assert resumed._start_step == 30 and int(datamanager.edits_done) == 8  # steps 30 and 35


def test_load_dir_of_a_nerfacto_tiny_run_starts_an_edit_from_its_weights(scene, base_run, tmp_path):
    config = _editing_config(scene, tmp_path, "from-base", 6)
    config.load_dir = base_run / "nerfstudio_models"
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    base_state = torch.load(resolve_checkpoint(base_run), map_location="cpu", weights_only=True)["pipeline"]
    hash_table = "field.mlp_base.model.0.hash_table"  # a nerfacto weight: loaded, not initialised
    assert torch.equal(trainer.pipeline.model.state_dict()[hash_table], base_state[f"_model.{hash_table}"])
    trainer.pipeline.editor = RecolourEditor(_object(scene)["rgb"])
    trainer.train()
    assert trainer._start_step == 0  # a new edit from the base's weights: steps 0..5
    assert int(trainer.pipeline.datamanager.edits_done) == 2  # steps 0 and 5
