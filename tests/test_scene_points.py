"""A generated scene's point cloud (splatfacto's seed points): on the surfaces, written as a PLY nerfstudio's
dataparser finds through ``ply_file_path``, read back without open3d and mapped into nerfstudio's frame."""

from __future__ import annotations

import json

import numpy as np
import torch

from relevance_nerf2nerf.nerf.dataparser import PointCloudDataParserConfig
from relevance_nerf2nerf.scenes import generate_scene, random_scene_spec
from relevance_nerf2nerf.scenes.points import POINT_CLOUD_NAME, add_point_cloud, read_ply, surface_points


def test_points_lie_on_the_floor_or_on_an_object_with_the_renderers_colours():
    spec = random_scene_spec(seed=3, num_objects=4)
    positions, colours = surface_points(spec, 1000, seed=0)
    assert positions.shape == (1000, 3) and colours.dtype == np.uint8
    on_floor = np.abs(positions[:, 2]) < 1e-6
    assert np.all(np.abs(positions[on_floor, :2]) <= spec.floor_extent + 1e-6)
    for point in positions[~on_floor]:  # within 3 sizes of some object's base centre
        assert min(np.hypot(*(point[:2] - (o.x, o.y))) - 1.5 * o.size for o in spec.objects) <= 1e-5
    for obj in spec.objects:  # each object's points carry its hue: its own channel is the brightest
        near = np.hypot(positions[:, 0] - obj.x, positions[:, 1] - obj.y) < 0.5 * obj.size
        near &= ~on_floor
        if near.any():
            assert np.argmax(colours[near].mean(0)) == int(np.argmax(obj.rgb)), obj.name


def test_ply_is_read_back_in_ascii_and_in_binary(tmp_path):
    info = generate_scene(tmp_path / "scene", seed=0, num_views=4, width=16, height=16)
    path = add_point_cloud(info.output_dir, num_points=300, seed=1)
    positions, colours = read_ply(path)
    expected, expected_colours = surface_points(info.spec, 300, seed=1)
    assert np.allclose(positions, expected, atol=1e-5) and np.array_equal(colours, expected_colours)
    layout = np.dtype(
        [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    )
    records = np.zeros(len(expected), dtype=layout)
    for i, name in enumerate("xyz"):
        records[name] = expected[:, i]
    for i, name in enumerate(("red", "green", "blue")):
        records[name] = expected_colours[:, i]
    properties = "".join(f"property {t} {n}\n" for t, n in [("float", "x"), ("float", "y"), ("float", "z"),
                         ("uchar", "red"), ("uchar", "green"), ("uchar", "blue")])  # fmt: skip
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {len(expected)}\n{properties}end_header\n"
    binary = tmp_path / "binary.ply"
    binary.write_bytes(header.encode() + records.tobytes())
    positions, colours = read_ply(binary)
    assert np.array_equal(positions, expected) and np.array_equal(colours, expected_colours)


def test_the_dataparser_maps_the_points_into_nerfstudios_frame(tmp_path):
    info = generate_scene(tmp_path / "scene", seed=0, num_views=6, width=16, height=16)
    add_point_cloud(info.output_dir, num_points=200)
    assert json.loads((info.output_dir / "transforms.json").read_text())["ply_file_path"] == POINT_CLOUD_NAME
    outputs = PointCloudDataParserConfig(data=info.output_dir).setup().get_dataparser_outputs()
    points = outputs.metadata["points3D_xyz"]
    world = torch.from_numpy(surface_points(info.spec, 200, seed=0)[0])
    homogeneous = torch.cat([world, torch.ones(200, 1)], dim=-1)
    expected = outputs.dataparser_scale * (homogeneous @ outputs.dataparser_transform.T)
    assert torch.allclose(points, expected, atol=1e-5)
    assert outputs.metadata["points3D_rgb"].shape == (200, 3)
