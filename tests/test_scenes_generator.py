"""The synthetic scene generator: deterministic, masks that match the renders, nerfstudio-loadable."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.scenes import (
    COLOURS,
    generate_scene,
    load_scene,
    random_scene_spec,
    render_views,
    ring_cameras,
)
from relevance_nerf2nerf.scenes.spec import SceneObject, SceneSpec

SMALL = {"num_views": 6, "width": 40, "height": 32}


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_writes_identical_bytes_and_other_seeds_differ(tmp_path):
    a = _files(generate_scene(tmp_path / "a", seed=3, **SMALL).output_dir)
    b = _files(generate_scene(tmp_path / "b", seed=3, **SMALL).output_dir)
    c = generate_scene(tmp_path / "c", seed=4, **SMALL)
    assert a == b
    assert len(a) == 2 + 6 + 3 * 6  # transforms.json, scene.json, images, 3 objects' masks
    first = np.asarray(Image.open(tmp_path / "a" / "images" / "frame_00000.png"))
    assert first.shape == (32, 40, 3)
    assert not np.array_equal(first, np.asarray(Image.open(c.image_paths[0])))


def test_recolouring_changes_exactly_the_objects_mask():
    spec = random_scene_spec(seed=7, num_objects=4)
    cameras = ring_cameras(4, 48, 48)
    images, masks = render_views(spec, cameras)
    assert all(m.any() for m in masks.values())  # every object is seen by some view
    for obj in spec.objects:
        other = next(c for c in COLOURS if c != obj.colour)
        recoloured, masks_again = render_views(spec, cameras, recolour={obj.name: other})
        changed = (recoloured != images).any(dim=-1)
        assert torch.equal(changed, masks[obj.name]), obj.name
        assert all(torch.equal(masks[k], masks_again[k]) for k in masks)


def test_written_masks_and_scene_json_match_the_renders(tmp_path):
    info = generate_scene(tmp_path, seed=1, **SMALL)
    _, masks = render_views(info.spec, info.cameras)
    for name, paths in info.mask_paths.items():
        written = np.stack([np.asarray(Image.open(p)) for p in paths])
        assert set(np.unique(written)) <= {0, 255}
        assert np.array_equal(written == 255, masks[name].numpy())
    scene = json.loads((tmp_path / "scene.json").read_text())
    described = {(o["name"], o["shape"], o["colour"], tuple(o["rgb"])) for o in scene["spec"]["objects"]}
    assert described == {(o.name, o.shape, o.colour, COLOURS[o.colour]) for o in info.spec.objects}
    reloaded = load_scene(tmp_path)
    assert reloaded.spec == info.spec
    assert torch.allclose(reloaded.cameras.c2w, info.cameras.c2w)


def test_cameras_follow_the_opengl_convention():
    """The sphere's centre, projected with x right / y up / looking down -z, lands inside its mask."""
    sphere = SceneObject("sphere", "sphere", "red", x=0.8, y=-0.5, size=0.3)
    cameras = ring_cameras(8, 64, 64)
    _, masks = render_views(SceneSpec(objects=(sphere,)), cameras)
    centre = torch.tensor([sphere.x, sphere.y, sphere.size, 1.0])
    for view in range(len(cameras)):
        x, y, z, _ = torch.linalg.inv(cameras.c2w[view]) @ centre
        assert z < 0  # in front of the camera
        u = cameras.fx * x / -z + cameras.cx
        v = cameras.cy - cameras.fy * y / -z
        assert masks["sphere"][view, int(v), int(u)], view


def test_nerfstudio_dataparser_loads_the_scene(tmp_path):
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    info = generate_scene(tmp_path, seed=0, num_views=10, width=32, height=32)
    outputs = NerfstudioDataParserConfig(data=tmp_path).setup().get_dataparser_outputs("train")
    assert len(outputs.image_filenames) == 9  # nerfstudio's default 90% train split of 10 views
    assert all(p.is_file() and p.parent.name == "images" for p in outputs.image_filenames)
    assert torch.allclose(outputs.cameras.fx, torch.tensor(info.cameras.fx))
    assert int(outputs.cameras.width[0]) == 32 and int(outputs.cameras.height[0]) == 32


def test_held_out_views_are_nerfstudios_eval_split_and_never_trained_on(tmp_path):
    """With held-out views, nerfstudio-data trains on exactly the ring's views and evaluates on the held-out
    ones (val and test splits), which sit at cameras no training view has, with their own masks."""
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    info = generate_scene(tmp_path, seed=0, num_views=10, width=32, height=32, num_held_out=4)
    assert info.held_out_names == [f"frame_{i:05d}.png" for i in range(10, 14)]
    assert info.train_names == [f"frame_{i:05d}.png" for i in range(10)]
    parser = NerfstudioDataParserConfig(data=tmp_path).setup()
    splits = {s: parser.get_dataparser_outputs(s) for s in ("train", "val", "test")}
    assert [p.name for p in splits["train"].image_filenames] == info.train_names
    assert [p.name for p in splits["val"].image_filenames] == info.held_out_names
    assert [p.name for p in splits["test"].image_filenames] == info.held_out_names
    positions = info.cameras.c2w[:, :3, 3]
    distances = torch.cdist(positions[10:], positions[:10])
    assert distances.min() > 0.3  # every held-out camera is away from every training camera
    for name in info.object_names:
        assert all(p.is_file() for p in info.mask_paths[name])
    _, masks = render_views(info.spec, info.cameras)
    assert any(masks[name][10:].any() for name in info.object_names)
    reloaded = load_scene(tmp_path)
    assert reloaded.held_out_names == info.held_out_names and len(reloaded.image_paths) == 14


def test_without_held_out_views_the_split_is_left_to_nerfstudio(tmp_path):
    info = generate_scene(tmp_path, seed=0, **SMALL)
    transforms = json.loads((tmp_path / "transforms.json").read_text())
    assert not any(key.endswith("_filenames") for key in transforms)
    assert info.held_out_names == [] and len(info.train_names) == SMALL["num_views"]


def test_scene_command_writes_held_out_views(tmp_path):
    from relevance_nerf2nerf.cli.scene import main

    args = ["--output-dir", str(tmp_path / "s"), "--num-views", "3", "--width", "16", "--height", "16"]
    assert main([*args, "--num-held-out", "2"]) == 0
    assert load_scene(tmp_path / "s").held_out_names == ["frame_00003.png", "frame_00004.png"]


@pytest.mark.parametrize(
    "kwargs",
    [{"num_objects": 5}, {"num_objects": 0}, {"width": 4}, {"num_views": 0}, {"supersample": 0},
     {"num_held_out": -1}, {"num_held_out": 30}],
)  # fmt: skip
def test_bad_arguments_raise_a_clear_error(tmp_path, kwargs):
    with pytest.raises(InvalidInputError):
        generate_scene(tmp_path, **kwargs)


def test_scene_command_writes_a_scene_and_reports_bad_input(tmp_path, capsys):
    from relevance_nerf2nerf.cli.scene import main

    args = ["--output-dir", str(tmp_path / "s"), "--num-views", "3", "--width", "16", "--height", "16"]
    assert main(args) == 0
    assert len(list((tmp_path / "s" / "images").iterdir())) == 3
    assert main(["--output-dir", str(tmp_path / "t"), "--num-objects", "9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "num_objects" in err[0]
