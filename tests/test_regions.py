"""User regions: a box of transforms.json's frame projects onto the object it encloses, masks from a folder,
edits that change nothing outside the region (the core editor, the scene pipeline, relevance-edit), and bad
regions refused at set-up in one line."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.data.datasets.base_dataset import InputDataset
from PIL import Image

from method_configs.relevance_nerf2nerf import relevance_nerf2nerf_tiny
from relevance_nerf2nerf._testing import in_process_config
from relevance_nerf2nerf.assets import TOY_EDITOR_DIR
from relevance_nerf2nerf.diffusion.images import to_uint8
from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.nerf.regions import check_region_settings, editor_inputs, training_regions
from relevance_nerf2nerf.scenes import SceneObject, SceneSpec, ring_cameras, write_scene

CUBE = SceneObject("cube", "cube", "red", x=0.9, y=0.2, size=0.4)  # axis-aligned (angle 0)
SPHERE = SceneObject("sphere", "sphere", "purple", x=-1.0, y=-0.3, size=0.35)
CUBE_BOX = (0.5, -0.2, 0.0, 1.3, 0.6, 0.8)  # the cube's exact extent: x +- 0.4, y +- 0.4, z in [0, 0.8]


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """A cube and a sphere, 10 views of 32x32 (transforms.json in the scene's world frame)."""
    spec = SceneSpec(objects=(CUBE, SPHERE), seed=0)
    return write_scene(
        tmp_path_factory.mktemp("regions") / "scene", spec, ring_cameras(10, 32, 32)
    ).output_dir


@pytest.fixture(scope="module")
def toy_editor():
    from relevance_nerf2nerf.diffusion.editor import load_editor

    return load_editor(TOY_EDITOR_DIR)


def _datamanager(scene: Path):
    """The training split as the scene pipeline's datamanager holds it (nerfstudio's dataparser)."""
    outputs = NerfstudioDataParserConfig(data=scene).setup().get_dataparser_outputs("train")
    return SimpleNamespace(train_dataset=InputDataset(outputs))


def _truth(scene: Path, datamanager, name: str) -> torch.Tensor:
    files = datamanager.train_dataset._dataparser_outputs.image_filenames
    masks = [np.asarray(Image.open(scene / "masks" / name / Path(f).name)) > 127 for f in files]
    return torch.from_numpy(np.stack(masks))[:, None]


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_a_box_around_the_cube_projects_onto_the_cube(scene):
    """The box, given in transforms.json's frame, goes through the dataparser's transform and scale (which
    here recentre and shrink the scene) and projects onto the cube's ground-truth masks."""
    datamanager = _datamanager(scene)
    outputs = datamanager.train_dataset._dataparser_outputs
    assert float(outputs.dataparser_scale) != 1.0  # the mapping is exercised, not the identity
    regions = training_regions(None, CUBE_BOX, datamanager)
    assert regions.shape == (9, 1, 32, 32)
    assert _iou(regions, _truth(scene, datamanager, "cube")) >= 0.8
    assert _iou(regions, _truth(scene, datamanager, "sphere")) < 0.05  # at most a pixel where they touch


def test_region_masks_are_read_by_image_name(scene, tmp_path):
    datamanager = _datamanager(scene)
    files = datamanager.train_dataset._dataparser_outputs.image_filenames
    rng = np.random.default_rng(0)
    expected = rng.random((len(files), 32, 32)) > 0.5
    for path, mask in zip(files, expected, strict=True):
        Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / Path(path).name)
    regions = training_regions(tmp_path, None, datamanager)
    assert torch.equal(regions[:, 0], torch.from_numpy(expected))


@pytest.mark.parametrize("crop", [False, True])
def test_the_core_edit_keeps_every_pixel_outside_the_region(toy_editor, scene, crop):
    """tau 0 (every pixel relevant) and a region of the left half: the right half stays the input's bit for
    bit, the left half changes, and the mask is the region."""
    from relevance_nerf2nerf.diffusion.crop import CropSettings
    from relevance_nerf2nerf.diffusion.images import load_image

    image = load_image(scene / "images" / "frame_00000.png")
    region = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    region[..., :13] = True  # not on the latent grid (factor 4): the composite is exact anyway
    result = toy_editor.edit(image, "make the cube blue", mask_threshold=0.0, num_steps=3, region=region,
                             generator=torch.Generator().manual_seed(0),
                             crop=CropSettings() if crop else None)  # fmt: skip
    assert torch.equal(result.mask, region)
    assert torch.equal(result.image[..., 13:], image[..., 13:])
    assert (result.image[..., :13] - image[..., :13]).abs().max() > 0.01


def test_editor_inputs_intersect_keeps_relevance_and_replace_uses_the_region():
    relevance = torch.rand(1, 1, 4, 4)
    region = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    region[..., :2, :] = True
    assert editor_inputs(relevance, None, "intersect") == (relevance, None)
    kept, given = editor_inputs(relevance, region, "intersect")
    assert kept is relevance and torch.equal(given, region.float())
    replaced, given = editor_inputs(relevance, region, "replace")
    assert torch.equal(replaced, region.float()) and torch.equal(given, region.float())


@pytest.mark.parametrize("mode", ["intersect", "replace"])
def test_scene_edit_changes_nothing_outside_the_box(scene, tmp_path, toy_editor, mode):
    """Eight updates of an untrained NeRF at tau 0.3 (renders far from the capture): in every edited view,
    every pixel outside the box's region is the capture's, and pixels inside changed."""
    config = in_process_config(relevance_nerf2nerf_tiny.config, scene, tmp_path, "regions", mode, 16)
    config.pipeline.datamanager.train_num_rays_per_batch = 256
    config.pipeline.instruction = "make the cube blue"
    config.pipeline.editor_model = str(TOY_EDITOR_DIR)
    config.pipeline.mask_threshold = 0.3
    config.pipeline.edit_every = 2
    config.pipeline.edit_steps = 2
    config.pipeline.region_box = CUBE_BOX
    config.pipeline.region_mode = mode
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.pipeline.editor = toy_editor
    trainer.train()
    datamanager = trainer.pipeline.datamanager
    regions = trainer.pipeline.regions[:, 0, :, :, None]  # (N, H, W, 1)
    edited = [int(i) for i in torch.nonzero(datamanager.edit_counts).flatten()]
    assert len(edited) >= 6
    originals = to_uint8(datamanager.original_images)
    for index in edited:
        outside = ~regions[index].expand(-1, -1, 3)
        assert torch.equal(datamanager.edited_images[index][outside], originals[index][outside])
    changed = sum(int((datamanager.edited_images[i] != originals[i]).any()) for i in edited)
    assert changed >= len(edited) // 2


@pytest.mark.parametrize(
    ("masks", "box", "mode", "message"),
    [
        ("both", CUBE_BOX, "intersect", "not both"),
        (None, None, "replace", "no region is given"),
        ("missing", None, "intersect", "is not a folder"),
        (None, (1.0, 0.0, 0.0, 0.5, 1.0, 1.0), "intersect", "x_min < x_max"),
        (None, (0.0, 0.0, 0.0, float("nan"), 1.0, 1.0), "intersect", "six finite numbers"),
    ],
)
def test_unusable_region_settings_are_refused_before_any_data_is_read(tmp_path, masks, box, mode, message):
    folder = {"both": tmp_path, "missing": tmp_path / "missing", None: None}[masks]
    with pytest.raises(InvalidInputError, match=message) as error:
        check_region_settings(folder, box, mode)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("problem", ["missing", "size", "black", "unseen"])
def test_bad_regions_are_refused_at_set_up_in_one_line(scene, tmp_path, problem):
    """Trainer set-up (before the first update) refuses masks that are missing, of another size or all
    black, and a box that no view sees."""
    datamanager = _datamanager(scene)
    names = [Path(f).name for f in datamanager.train_dataset._dataparser_outputs.image_filenames]
    folder = tmp_path / "masks"
    folder.mkdir()
    size = (16, 16) if problem == "size" else (32, 32)
    for name in names[:-1] if problem == "missing" else names:
        Image.fromarray(np.full(size, 0 if problem == "black" else 255, dtype=np.uint8)).save(folder / name)
    config = in_process_config(relevance_nerf2nerf_tiny.config, scene, tmp_path / "runs", "bad", problem, 4)
    config.pipeline.instruction = "make the cube blue"
    config.pipeline.editor_model = str(TOY_EDITOR_DIR)
    if problem == "unseen":
        config.pipeline.region_box = (20.0, 20.0, 0.0, 21.0, 21.0, 1.0)  # far outside every view
    else:
        config.pipeline.region_masks = folder
    messages = {"missing": "lacks the masks of 1 of 9", "size": "is 16x16, the training views 32x32",
                "black": "is black", "unseen": "no training view sees"}  # fmt: skip
    trainer = config.setup(local_rank=0, world_size=1)
    with pytest.raises(InvalidInputError, match=messages[problem]) as error:
        trainer.setup()
    assert "\n" not in str(error.value)


def test_relevance_edit_region_mask_keeps_the_rest_of_the_image(scene, tmp_path, capsys):
    from relevance_nerf2nerf.cli.edit import main

    image = scene / "images" / "frame_00000.png"
    region = np.zeros((32, 32), dtype=np.uint8)
    region[:, :13] = 255
    Image.fromarray(region).save(tmp_path / "region.png")
    out = tmp_path / "edited.png"
    args = [
        "--image",
        str(image),
        "--instruction",
        "make the cube blue",
        "--output",
        str(out),
        "--steps",
        "3",
    ]
    args += [
        "--model",
        str(TOY_EDITOR_DIR),
        "--mask-threshold",
        "0",
        "--region-mask",
        str(tmp_path / "region.png"),
    ]
    assert main(args) == 0
    before, after = np.asarray(Image.open(image)), np.asarray(Image.open(out))
    assert np.array_equal(after[:, 13:], before[:, 13:]) and not np.array_equal(after[:, :13], before[:, :13])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "edited_mask.png")), region)

    Image.fromarray(region[:16]).save(tmp_path / "small.png")
    args[-1] = str(tmp_path / "small.png")
    args.append("--overwrite")
    out.unlink()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "--region-mask" in err and "is 32x16, --image 32x32" in err and "\n" not in err
    assert not out.exists()


def test_region_flags_parse_as_ns_train_gives_them():
    """The box's six numbers (negative ones included) and the mode, through tyro as ns-train parses them."""
    import tyro

    from method_configs.relevance_nerf2nerf import In2NAliasedPipelineConfig

    args = ["--instruction", "make the cube blue", "--region-box", "-1.5", "-0.2", "0", "1.3", "0.6", "0.8"]
    config = tyro.cli(In2NAliasedPipelineConfig, args=[*args, "--region-mode", "replace"])
    assert config.region_box == (-1.5, -0.2, 0.0, 1.3, 0.6, 0.8) and config.region_mode == "replace"
    config.validate()
