"""What a synthetic scene is made of: named colours, objects, the scene description and cameras.

Everything is plain data, deterministic from a seed (``random.Random``; the global RNGs are untouched).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field

import torch

from relevance_nerf2nerf.errors import InvalidInputError

RGB = tuple[float, float, float]

# Albedos of the named colours objects are painted in (and that instructions name).
COLOURS: dict[str, RGB] = {
    "red": (0.85, 0.12, 0.10),
    "green": (0.15, 0.70, 0.20),
    "blue": (0.12, 0.28, 0.90),
    "yellow": (0.95, 0.82, 0.12),
    "purple": (0.58, 0.20, 0.78),
    "orange": (0.98, 0.50, 0.08),
}
SHAPES: tuple[str, ...] = ("sphere", "cube", "cylinder", "cone")
# Radius of each shape's footprint on the floor, in units of the object's size.
_FOOTPRINT = {"sphere": 1.0, "cube": math.sqrt(2.0), "cylinder": 1.0, "cone": 1.2}


@dataclass(frozen=True)
class SceneObject:
    """One object standing on the floor at (x, y). ``name`` is what instructions call it (its shape)."""

    name: str
    shape: str
    colour: str
    x: float
    y: float
    size: float
    angle: float = 0.0  # rotation about the vertical axis (cubes)

    @property
    def rgb(self) -> RGB:
        """The object's colour as an RGB triple in [0, 1]."""
        return COLOURS[self.colour]


@dataclass(frozen=True)
class SceneSpec:
    """A full scene: objects on a checkerboard floor square under a sky gradient, lit from one direction."""

    objects: tuple[SceneObject, ...]
    seed: int = 0
    floor_extent: float = 3.0  # the floor is the square |x|, |y| <= floor_extent
    checker_size: float = 0.5
    floor_colours: tuple[RGB, RGB] = ((0.78, 0.77, 0.74), (0.46, 0.46, 0.47))  # checker squares
    sky_colours: tuple[RGB, RGB] = ((0.87, 0.89, 0.93), (0.52, 0.67, 0.88))  # horizon, zenith
    light_direction: RGB = (0.45, -0.35, 1.0)
    ambient: float = 0.35

    def object(self, name: str) -> SceneObject:
        """The object called ``name``.

        Args:
            name (str): an object name (its shape).
        """
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise InvalidInputError(f"no object named {name!r} in the scene; use one of: {self.object_names()}")

    def object_names(self) -> str:
        """The object names, comma-separated (for messages)."""
        return ", ".join(obj.name for obj in self.objects)

    def to_dict(self) -> dict:
        """A JSON-ready dict of the scene (``scene.json``), each object with its RGB too."""
        data = asdict(self)
        for entry, obj in zip(data["objects"], self.objects, strict=True):
            entry["rgb"] = list(obj.rgb)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SceneSpec:
        """Read a scene back from :meth:`to_dict`'s dict.

        Args:
            data (dict): the parsed ``scene.json``.
        """
        objects = tuple(
            SceneObject(**{k: v for k, v in o.items() if k in SceneObject.__dataclass_fields__})
            for o in data["objects"]
        )
        rest = {k: v for k, v in data.items() if k != "objects" and k in cls.__dataclass_fields__}
        for key in ("floor_colours", "sky_colours"):
            if key in rest:
                rest[key] = tuple(tuple(c) for c in rest[key])
        if "light_direction" in rest:
            rest["light_direction"] = tuple(rest["light_direction"])
        return cls(objects=objects, **rest)


def random_scene_spec(seed: int = 0, num_objects: int = 3) -> SceneSpec:
    """Objects of distinct shapes and distinct colours at non-overlapping random places near the centre.

    Args:
        seed (int, default 0): scene seed (shapes, colours, places).
        num_objects (int, default 3): objects, one per shape.
    """
    if not 1 <= num_objects <= len(SHAPES):
        raise InvalidInputError(f"num_objects must be between 1 and {len(SHAPES)} (one object per shape)")
    rng = random.Random(seed)
    shapes = rng.sample(SHAPES, num_objects)
    colours = rng.sample(sorted(COLOURS), num_objects)
    for _ in range(100):  # retry the whole layout if an object finds no room
        objects = _place(rng, shapes, colours)
        if objects is not None:
            return SceneSpec(objects=tuple(objects), seed=seed)
    raise RuntimeError("could not place the objects without overlap")  # pragma: no cover


def _place(rng: random.Random, shapes: list[str], colours: list[str]) -> list[SceneObject] | None:
    objects: list[SceneObject] = []
    for shape, colour in zip(shapes, colours, strict=True):
        size = rng.uniform(0.28, 0.38)
        for _ in range(200):
            radius, azimuth = 1.2 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
            x, y = radius * math.cos(azimuth), radius * math.sin(azimuth)
            clear = all(
                math.hypot(x - o.x, y - o.y) > _FOOTPRINT[shape] * size + _FOOTPRINT[o.shape] * o.size + 0.1
                for o in objects
            )
            if clear:
                break
        else:
            return None
        objects.append(SceneObject(shape, shape, colour, x, y, size, rng.uniform(0, math.pi / 2)))
    return objects


@dataclass
class Cameras:
    """Pinhole cameras sharing intrinsics; ``c2w`` (V, 4, 4) camera-to-world in the OpenGL convention."""

    c2w: torch.Tensor
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.c2w.shape[0]


def look_at(position: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Camera-to-world (V, 4, 4) for cameras at ``position`` (V, 3) looking at ``target`` (V, 3), z up.

    Args:
        position (torch.Tensor): (V, 3) camera centres.
        target (torch.Tensor): (V, 3) points the cameras look at.
    """
    forward = target - position
    forward = forward / forward.norm(dim=-1, keepdim=True)
    right = torch.linalg.cross(forward, torch.tensor([0.0, 0.0, 1.0]).expand_as(forward), dim=-1)
    right = right / right.norm(dim=-1, keepdim=True)
    up = torch.linalg.cross(right, forward, dim=-1)
    c2w = torch.eye(4).repeat(position.shape[0], 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, up, -forward, position
    return c2w


def _intrinsics(width: int, height: int, fov_degrees: float) -> dict:
    focal = 0.5 * width / math.tan(math.radians(fov_degrees) / 2)
    return {"fx": focal, "fy": focal, "cx": width / 2, "cy": height / 2, "width": width, "height": height}


def _check_size(width: int, height: int, num_views: int) -> None:
    if width < 8 or height < 8:
        raise InvalidInputError(f"image size {width}x{height} is too small: use at least 8x8 pixels")
    if num_views < 1:
        raise InvalidInputError("num_views must be at least 1")


def ring_cameras(
    num_views: int,
    width: int = 64,
    height: int = 64,
    *,
    radius: float = 3.2,
    elevation: float = 1.9,
    elevation_jitter: float = 0.3,
    fov_degrees: float = 45.0,
    target: tuple[float, float, float] = (0.0, 0.0, 0.3),
) -> Cameras:
    """A full ring of cameras looking at the centre; heights alternate by ``elevation_jitter``.

    Args:
        num_views (int): cameras on the ring.
        width (int, default 64): image width in pixels.
        height (int, default 64): image height in pixels.
        radius (float, default 3.2): ring radius.
        elevation (float, default 1.9): mean camera height.
        elevation_jitter (float, default 0.3): height alternation between neighbours.
        fov_degrees (float, default 45.0): horizontal field of view.
        target (tuple[float, float, float], default (0.0, 0.0, 0.3)): the point every camera looks at.
    """
    _check_size(width, height, num_views)
    azimuth = torch.arange(num_views, dtype=torch.float32) * (2 * math.pi / num_views)
    z = elevation + elevation_jitter * torch.tensor([(-1.0) ** i for i in range(num_views)]) / 2
    return _orbit(azimuth, z, radius, target, _intrinsics(width, height, fov_degrees))


def _orbit(azimuth: torch.Tensor, z: torch.Tensor, radius: float, target: tuple, intrinsics: dict) -> Cameras:
    position = torch.stack([radius * torch.cos(azimuth), radius * torch.sin(azimuth), z], dim=-1)
    c2w = look_at(position, torch.tensor(target).expand_as(position))
    return Cameras(c2w=c2w, **intrinsics)


def held_out_cameras(
    num_held_out: int,
    num_views: int,
    width: int = 64,
    height: int = 64,
    *,
    radius: float = 3.2,
    elevation: float = 1.9,
    fov_degrees: float = 45.0,
    target: tuple[float, float, float] = (0.0, 0.0, 0.3),
) -> Cameras:
    """Evaluation cameras between the cameras of ``ring_cameras(num_views, ...)``: each sits at the azimuth
    halfway between two neighbouring training cameras, at the ring's mean height, and the ``num_held_out``
    gaps used are spread evenly around the ring. No training camera coincides with any of them.

    Args:
        num_held_out (int): number of evaluation cameras, 1 to ``num_views``.
        num_views (int): number of training cameras on the ring these are held out from.
        width (int, default 64): image width in pixels.
        height (int, default 64): image height in pixels.
        radius (float, default 3.2): horizontal distance from the scene's vertical axis.
        elevation (float, default 1.9): camera height (the training ring's mean height).
        fov_degrees (float, default 45.0): horizontal field of view.
        target (tuple, default (0, 0, 0.3)): the point every camera looks at.
    """
    _check_size(width, height, num_views)
    if not 1 <= num_held_out <= num_views:
        raise InvalidInputError(
            f"num_held_out must lie between 1 and the training views' count {num_views}, got {num_held_out}"
        )
    gaps = torch.tensor([k * num_views // num_held_out for k in range(num_held_out)], dtype=torch.float32)
    azimuth = (gaps + 0.5) * (2 * math.pi / num_views)
    z = torch.full((num_held_out,), float(elevation))
    return _orbit(azimuth, z, radius, target, _intrinsics(width, height, fov_degrees))


def concatenate_cameras(first: Cameras, second: Cameras) -> Cameras:
    """``first``'s cameras followed by ``second``'s (same intrinsics required).

    Args:
        first (Cameras): cameras that come first.
        second (Cameras): cameras appended after them.
    """
    intrinsics = ("fx", "fy", "cx", "cy", "width", "height")
    if any(getattr(first, k) != getattr(second, k) for k in intrinsics):
        raise InvalidInputError("cameras with different intrinsics cannot share one dataset")
    return Cameras(torch.cat([first.c2w, second.c2w]), **{k: getattr(first, k) for k in intrinsics})


def random_cameras(
    num_views: int, width: int = 64, height: int = 64, *, seed: int = 0, fov_degrees: float = 45.0
) -> Cameras:
    """Cameras at random azimuths, distances and heights around the scene (training data for the editor).

    Args:
        num_views (int): number of cameras.
        width (int, default 64): image width in pixels.
        height (int, default 64): image height in pixels.
        seed (int, default 0): seed of the placements.
        fov_degrees (float, default 45.0): horizontal field of view.
    """
    _check_size(width, height, num_views)
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(num_views, 5, generator=gen)
    azimuth = 2 * math.pi * u[:, 0]
    radius, z = 2.9 + 0.6 * u[:, 1], 1.5 + 0.8 * u[:, 2]
    position = torch.stack([radius * torch.cos(azimuth), radius * torch.sin(azimuth), z], dim=-1)
    target = torch.stack([0.2 * u[:, 3] - 0.1, 0.2 * u[:, 4] - 0.1, torch.full_like(z, 0.3)], dim=-1)
    return Cameras(c2w=look_at(position, target), **_intrinsics(width, height, fov_degrees))
