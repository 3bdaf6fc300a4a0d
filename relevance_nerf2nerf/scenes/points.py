"""A point cloud of a synthetic scene's surfaces, written as ``ns-process-data`` writes one for a capture.

Gaussian splatting starts from points on the surfaces (SfM points for a real capture). For a generated scene
they are sampled on the analytic surfaces themselves (objects and the floor square), coloured with the
renderer's Lambertian shading, written as ``points3D.ply`` and named by ``ply_file_path`` in the scene's
``transforms.json``, where nerfstudio's ``nerfstudio-data`` parser finds it (``load_3D_points``).

:func:`read_ply` reads such files (ASCII or binary little-endian, as ``ns-process-data`` and this module write
them) without open3d, which nerfstudio uses for them and which does not import on every machine.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.outputs import atomic_write
from relevance_nerf2nerf.scenes.spec import SceneObject, SceneSpec

POINT_CLOUD_NAME = "points3D.ply"
"""File name of a scene's point cloud, beside its ``transforms.json``."""
OBJECT_SHARE = 0.6
"""Share of the points on the objects (split evenly between them); the rest lie on the floor square."""

_PLY_TYPES = {
    "char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4",
    "float": "f4", "double": "f8", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2",
    "int32": "i4", "uint32": "u4", "float32": "f4", "float64": "f8",
}  # fmt: skip


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True).clip(min=1e-9)


def _rotate_z(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1], v[:, 2]], axis=-1)


def _object_surface(obj: SceneObject, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` points (and outward normals) uniformly on the visible surface of one object."""
    size, base = obj.size, np.array([obj.x, obj.y, 0.0])
    if obj.shape == "sphere":
        normal = _unit(rng.normal(size=(count, 3)))
        return base + np.array([0.0, 0.0, size]) + size * normal, normal
    if obj.shape == "cube":  # five faces (the bottom one rests on the floor)
        face = rng.integers(0, 5, count)
        axis, sign = np.array([0, 0, 1, 1, 2])[face], np.array([-1.0, 1.0, -1.0, 1.0, 1.0])[face]
        local = rng.uniform(-size, size, (count, 3))
        local[np.arange(count), axis] = sign * size
        normal = np.zeros((count, 3))
        normal[np.arange(count), axis] = sign
        return base + np.array([0.0, 0.0, size]) + _rotate_z(local, obj.angle), _rotate_z(normal, obj.angle)
    azimuth = rng.uniform(0.0, 2 * math.pi, count)
    around = np.stack([np.cos(azimuth), np.sin(azimuth), np.zeros(count)], axis=-1)
    if obj.shape == "cylinder":
        radius, height = size, 2.4 * size
        on_cap = rng.random(count) < radius / (radius + 2 * height)  # cap area / (cap + side)
        r = np.where(on_cap, radius * np.sqrt(rng.random(count)), radius)
        z = np.where(on_cap, height, rng.uniform(0.0, height, count))
        normal = np.where(on_cap[:, None], np.array([0.0, 0.0, 1.0]), around)
        return base + r[:, None] * around + z[:, None] * np.array([0.0, 0.0, 1.0]), normal
    if obj.shape == "cone":  # lateral surface: area density grows linearly towards the base
        radius, height = 1.2 * size, 3.0 * size
        v = np.sqrt(rng.random(count))  # radius fraction
        z = height * (1.0 - v)
        normal = _unit(around + np.array([0.0, 0.0, radius / height]))  # the renderer's cone normal
        return base + (radius * v)[:, None] * around + z[:, None] * np.array([0.0, 0.0, 1.0]), normal
    raise InvalidInputError(f"no surface sampler for shape {obj.shape!r}")


def surface_points(spec: SceneSpec, num_points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points on the scene's surfaces with the colour the renderer gives them there.

    Args:
        spec (SceneSpec): the scene.
        num_points (int): how many points in all.
        seed (int, default 0): seed of the sampling.

    Returns:
        positions (N, 3) float32 in the scene's world frame and colours (N, 3) uint8.
    """
    if num_points < len(spec.objects) + 1:
        raise InvalidInputError(f"num_points must be at least {len(spec.objects) + 1}, got {num_points}")
    rng = np.random.default_rng(seed)
    light = _unit(np.array(spec.light_direction, dtype=np.float64))
    per_object = int(OBJECT_SHARE * num_points) // len(spec.objects)
    positions, colours = [], []
    for obj in spec.objects:
        points, normal = _object_surface(obj, per_object, rng)
        shade = spec.ambient + (1 - spec.ambient) * np.clip(normal @ light, 0.0, None)
        positions.append(points)
        colours.append(np.array(obj.rgb) * shade[:, None])
    floor_count = num_points - per_object * len(spec.objects)
    xy = rng.uniform(-spec.floor_extent, spec.floor_extent, (floor_count, 2))
    checker = (np.floor(xy[:, 0] / spec.checker_size) + np.floor(xy[:, 1] / spec.checker_size)) % 2
    floor = np.where(checker[:, None] > 0.5, spec.floor_colours[0], spec.floor_colours[1])
    positions.append(np.concatenate([xy, np.zeros((floor_count, 1))], axis=-1))
    colours.append(floor * (spec.ambient + (1 - spec.ambient) * light[2]))
    rgb = (np.clip(np.concatenate(colours), 0.0, 1.0) * 255).round().astype(np.uint8)
    return np.concatenate(positions).astype(np.float32), rgb


def write_ply(path: Path, positions: np.ndarray, colours: np.ndarray) -> None:
    """Write an ASCII PLY of coloured points (x y z as float, red green blue as uchar).

    Args:
        path (Path): the file to write.
        positions (np.ndarray): (N, 3) floats.
        colours (np.ndarray): (N, 3) uint8.
    """
    header = [
        "ply", "format ascii 1.0", f"element vertex {len(positions)}",
        "property float x", "property float y", "property float z",
        "property uchar red", "property uchar green", "property uchar blue", "end_header",
    ]  # fmt: skip
    rows = [
        f"{x:.6f} {y:.6f} {z:.6f} {r} {g} {b}"
        for (x, y, z), (r, g, b) in zip(positions, colours, strict=True)
    ]
    Path(path).write_text("\n".join(header + rows) + "\n")


def read_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the vertices of a point-cloud PLY (ASCII or binary little-endian).

    Args:
        path (Path): the file.

    Returns:
        positions (N, 3) float32 and colours (N, 3) uint8 (white when the file has none).
    """
    data = Path(path).read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise InvalidInputError(f"{path} is not a PLY file: pass the point cloud ns-process-data wrote")
    body_start = data.index(b"\n", end) + 1
    header = data[:end].decode("ascii", errors="replace").splitlines()
    fmt, count, fields, element = "", 0, [], ""
    for line in header:
        words = line.split()
        if words[:1] == ["format"]:
            fmt = words[1]
        elif words[:1] == ["element"]:
            element = words[1]
            if element == "vertex":
                count = int(words[2])
        elif words[:1] == ["property"] and element == "vertex":
            if words[1] == "list" or words[1] not in _PLY_TYPES:
                raise InvalidInputError(f"{path}: unsupported vertex property {' '.join(words[1:])}")
            fields.append((words[2], _PLY_TYPES[words[1]]))
    names = [name for name, _ in fields]
    if not {"x", "y", "z"} <= set(names):
        raise InvalidInputError(f"{path} has no x, y, z vertex properties")
    if fmt == "ascii":
        table = np.loadtxt(data[body_start:].decode("ascii").splitlines()[:count], ndmin=2)
        columns = {name: table[:, i] for i, name in enumerate(names)}
    elif fmt == "binary_little_endian":
        records = np.frombuffer(data, dtype=np.dtype([(n, "<" + t) for n, t in fields]), count=count,
                                offset=body_start)  # fmt: skip
        columns = {name: records[name] for name in names}
    else:
        raise InvalidInputError(f"{path}: PLY format {fmt!r} is not supported (ascii, binary_little_endian)")
    positions = np.stack([columns[k] for k in ("x", "y", "z")], axis=-1).astype(np.float32)
    if {"red", "green", "blue"} <= set(names):
        colours = np.stack([columns[k] for k in ("red", "green", "blue")], axis=-1).astype(np.uint8)
    else:
        colours = np.full((count, 3), 255, dtype=np.uint8)
    return positions, colours


def add_point_cloud(scene_dir: str | Path, num_points: int = 2000, seed: int = 0) -> Path:
    """Sample the surfaces of a generated scene, write ``points3D.ply`` beside its ``transforms.json`` and
    name it there as ``ply_file_path`` (both files written whole).

    Args:
        scene_dir (str | Path): a folder written by ``generate_scene``.
        num_points (int, default 2000): points in the cloud.
        seed (int, default 0): seed of the sampling.

    Returns:
        The point cloud's path.
    """
    from relevance_nerf2nerf.scenes.dataset import load_scene

    scene_dir = Path(scene_dir)
    spec = load_scene(scene_dir).spec
    positions, colours = surface_points(spec, num_points, seed)
    ply = atomic_write(scene_dir / POINT_CLOUD_NAME, lambda p: write_ply(p, positions, colours))
    transforms = json.loads((scene_dir / "transforms.json").read_text())
    transforms["ply_file_path"] = POINT_CLOUD_NAME
    atomic_write(scene_dir / "transforms.json", lambda p: p.write_text(json.dumps(transforms, indent=2)))
    return ply
