"""Vectorised analytic ray casting of the synthetic scenes (torch, CPU-fast).

World frame: z up, floor plane z = 0. Cameras follow nerfstudio's convention (OpenGL: +x right, +y up,
looking down -z; ``c2w`` is camera-to-world). Shading is Lambertian with ambient light from one fixed
direction, so every surface point has the same colour from every view (nothing view-dependent for the
NeRF to explain away).

Rendering is split in two: ``cast`` computes a geometry buffer (which object each sub-pixel sample hit and
its shading factor) once; ``GBuffer.compose`` turns it into images for any colour assignment. Recolouring an
object therefore changes exactly the pixels its mask covers, and training triplets cost one cast.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from relevance_nerf2nerf.errors import InvalidInputError
from relevance_nerf2nerf.scenes.spec import COLOURS, Cameras, SceneObject, SceneSpec

SKY = -1
FLOOR = -2
_EPS = 1e-6
_FAR = 1e9


@dataclass
class GBuffer:
    """Hit information of every sub-pixel sample: (views, height, width, supersample**2)."""

    object_id: torch.Tensor  # (V, H, W, S) int64: object index, FLOOR or SKY
    shade: torch.Tensor  # (V, H, W, S) float32 Lambertian factor (objects)
    background: torch.Tensor  # (V, H, W, S, 3) float32 colour where no object was hit (floor / sky)
    object_names: tuple[str, ...]

    def compose(self, colours: Mapping[str, str | tuple[float, float, float]]) -> torch.Tensor:
        """Images (V, H, W, 3) in [0, 1] with each object painted in ``colours[name]`` (name or RGB).

        Args:
            colours (Mapping[str, str | tuple[float, float, float]]): object name -> a colour name from
                ``COLOURS`` or an RGB triple in [0, 1].
        """
        albedo = torch.zeros(len(self.object_names) + 1, 3)
        for i, name in enumerate(self.object_names):
            albedo[i] = torch.tensor(_rgb(colours[name]))
        ids = self.object_id.clamp(min=-1)  # sky/floor index the spare last row, overwritten below
        painted = albedo[ids] * self.shade[..., None]
        samples = torch.where((self.object_id >= 0)[..., None], painted, self.background)
        return samples.mean(dim=3).clamp(0.0, 1.0)

    def masks(self) -> dict[str, torch.Tensor]:
        """Per object (V, H, W) bool: pixels where any sample sees it (what recolouring it changes)."""
        return {name: (self.object_id == i).any(dim=3) for i, name in enumerate(self.object_names)}


def _rgb(colour: str | tuple[float, float, float]) -> tuple[float, float, float]:
    if isinstance(colour, str):
        return COLOURS[colour]
    return tuple(float(c) for c in colour)  # type: ignore[return-value]


def camera_rays(cameras: Cameras, supersample: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray origins and unit directions (V, H, W, S, 3) through ``supersample**2`` sub-pixel points.

    Args:
        cameras (Cameras): the views to cast from.
        supersample (int): sub-pixel samples per side (S = supersample**2).
    """
    s = supersample
    offsets = (torch.arange(s, dtype=torch.float32) + 0.5) / s
    oy, ox = torch.meshgrid(offsets, offsets, indexing="ij")
    ys = torch.arange(cameras.height, dtype=torch.float32)[:, None, None] + oy.reshape(1, 1, -1)
    xs = torch.arange(cameras.width, dtype=torch.float32)[None, :, None] + ox.reshape(1, 1, -1)
    x = ((xs - cameras.cx) / cameras.fx).expand(cameras.height, cameras.width, s * s)
    y = (-(ys - cameras.cy) / cameras.fy).expand(cameras.height, cameras.width, s * s)
    local = torch.stack([x, y, -torch.ones_like(x)], dim=-1)  # (H, W, S, 3) OpenGL camera frame
    rot = cameras.c2w[:, :3, :3]  # (V, 3, 3)
    dirs = torch.einsum("vij,hwsj->vhwsi", rot, local)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = cameras.c2w[:, None, None, None, :3, 3].expand_as(dirs)
    return origins, dirs


def _sphere(obj: SceneObject, o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    centre = torch.tensor([obj.x, obj.y, obj.size])
    oc = o - centre
    b = (oc * d).sum(-1)
    c = (oc * oc).sum(-1) - obj.size**2
    disc = b * b - c
    t = -b - disc.clamp(min=0).sqrt()
    t = torch.where((disc > 0) & (t > _EPS), t, _FAR)
    normal = (o + t[..., None] * d - centre) / obj.size
    return t, normal


def _rotate_z(v: torch.Tensor, angle: float) -> torch.Tensor:
    c, s = torch.cos(torch.tensor(angle)), torch.sin(torch.tensor(angle))
    return torch.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1], v[..., 2]], dim=-1)


def _box(obj: SceneObject, o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cube of half-size ``size`` standing on the floor, rotated by ``obj.angle`` about z (slab method)."""
    half = obj.size
    lo = _rotate_z(o - torch.tensor([obj.x, obj.y, half]), -obj.angle)
    ld = _rotate_z(d, -obj.angle)
    ld = torch.where(ld.abs() < _EPS, torch.full_like(ld, _EPS), ld)
    t1, t2 = (-half - lo) / ld, (half - lo) / ld
    t_near, axis = torch.minimum(t1, t2).max(dim=-1)
    t_far = torch.maximum(t1, t2).min(dim=-1).values
    hit = (t_far >= t_near) & (t_near > _EPS)
    t = torch.where(hit, t_near, _FAR)
    local_normal = torch.zeros_like(lo)
    sign = -torch.sign(ld.gather(-1, axis[..., None]))
    local_normal.scatter_(-1, axis[..., None], sign)
    return t, _rotate_z(local_normal, obj.angle)


def _cylinder(obj: SceneObject, o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertical cylinder of radius ``size`` and height ``2.4 * size`` standing on the floor."""
    r, height = obj.size, 2.4 * obj.size
    ox, oy = o[..., 0] - obj.x, o[..., 1] - obj.y
    dx, dy = d[..., 0], d[..., 1]
    a = (dx * dx + dy * dy).clamp(min=_EPS)
    b = ox * dx + oy * dy
    c = ox * ox + oy * oy - r * r
    disc = b * b - a * c
    t_side = (-b - disc.clamp(min=0).sqrt()) / a
    z_side = o[..., 2] + t_side * d[..., 2]
    t_side = torch.where((disc > 0) & (t_side > _EPS) & (z_side >= 0) & (z_side <= height), t_side, _FAR)
    dz = torch.where(d[..., 2].abs() < _EPS, torch.full_like(d[..., 2], -_EPS), d[..., 2])
    t_cap = (height - o[..., 2]) / dz
    cx, cy = ox + t_cap * dx, oy + t_cap * dy
    t_cap = torch.where((dz < 0) & (t_cap > _EPS) & (cx * cx + cy * cy <= r * r), t_cap, _FAR)
    t = torch.minimum(t_side, t_cap)
    side_normal = torch.stack([ox + t * dx, oy + t * dy, torch.zeros_like(t)], dim=-1) / r
    cap_normal = torch.tensor([0.0, 0.0, 1.0]).expand_as(side_normal)
    return t, torch.where((t_cap < t_side)[..., None], cap_normal, side_normal)


def _cone(obj: SceneObject, o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertical cone: base radius ``1.2 * size`` on the floor, apex at height ``3 * size``."""
    r, height = 1.2 * obj.size, 3.0 * obj.size
    k2 = (r / height) ** 2
    ox, oy = o[..., 0] - obj.x, o[..., 1] - obj.y
    q = height - o[..., 2]  # apex height above the ray origin
    dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
    # x^2 + y^2 = k^2 (height - z)^2 along the ray: a t^2 + 2 b t + c = 0
    a = dx * dx + dy * dy - k2 * dz * dz
    b = ox * dx + oy * dy + k2 * q * dz
    c = ox * ox + oy * oy - k2 * q * q
    disc = b * b - a * c
    root = disc.clamp(min=0).sqrt()
    a_safe = torch.where(a.abs() < _EPS, torch.full_like(a, _EPS), a)
    best = torch.full_like(a, _FAR)
    for t in ((-b - root) / a_safe, (-b + root) / a_safe):
        z = o[..., 2] + t * dz
        ok = (disc > 0) & (t > _EPS) & (z >= 0) & (z <= height)
        best = torch.where(ok & (t < best), t, best)
    p = o + best[..., None] * d
    normal = torch.stack([p[..., 0] - obj.x, p[..., 1] - obj.y, k2 * (height - p[..., 2])], dim=-1)
    return best, normal / normal.norm(dim=-1, keepdim=True).clamp(min=_EPS)


_SHAPES = {"sphere": _sphere, "cube": _box, "cylinder": _cylinder, "cone": _cone}


def cast(spec: SceneSpec, cameras: Cameras, supersample: int = 2) -> GBuffer:
    """Intersect every sample ray with the objects and the floor; nearest hit wins.

    Args:
        spec (SceneSpec): the scene.
        cameras (Cameras): the views to cast from.
        supersample (int, default 2): sub-pixel samples per side.
    """
    o, d = camera_rays(cameras, supersample)
    light = torch.tensor(spec.light_direction)
    light = light / light.norm()
    best_t = torch.full(d.shape[:-1], _FAR)
    object_id = torch.full(d.shape[:-1], SKY, dtype=torch.int64)
    shade = torch.zeros(d.shape[:-1])
    for i, obj in enumerate(spec.objects):
        t, normal = _SHAPES[obj.shape](obj, o, d)
        closer = t < best_t
        best_t = torch.where(closer, t, best_t)
        object_id = torch.where(closer, torch.full_like(object_id, i), object_id)
        lambert = (normal * light).sum(-1).clamp(min=0)
        shade = torch.where(closer, spec.ambient + (1 - spec.ambient) * lambert, shade)
    # Floor: a checkerboard square; beyond it the sky gradient (depends on the direction only).
    dz = torch.where(d[..., 2] < -_EPS, d[..., 2], torch.full_like(d[..., 2], -_EPS))
    t_floor = -o[..., 2] / dz
    fx, fy = o[..., 0] + t_floor * d[..., 0], o[..., 1] + t_floor * d[..., 1]
    on_floor = (d[..., 2] < -_EPS) & (fx.abs() <= spec.floor_extent) & (fy.abs() <= spec.floor_extent)
    floor_hit = on_floor & (t_floor < best_t)
    object_id = torch.where(floor_hit, torch.full_like(object_id, FLOOR), object_id)
    checker = (torch.floor(fx / spec.checker_size) + torch.floor(fy / spec.checker_size)).remainder(2)
    floor_light = spec.ambient + (1 - spec.ambient) * float(light[2])
    floor_a, floor_b = torch.tensor(spec.floor_colours[0]), torch.tensor(spec.floor_colours[1])
    floor_rgb = torch.where(checker[..., None] > 0.5, floor_a, floor_b) * floor_light
    up = d[..., 2:3].clamp(min=0) ** 0.5
    sky_rgb = (1 - up) * torch.tensor(spec.sky_colours[0]) + up * torch.tensor(spec.sky_colours[1])
    background = torch.where(floor_hit[..., None], floor_rgb, sky_rgb)
    return GBuffer(object_id, shade, background, tuple(obj.name for obj in spec.objects))


def render_views(
    spec: SceneSpec,
    cameras: Cameras,
    *,
    recolour: Mapping[str, str | tuple[float, float, float]] | None = None,
    supersample: int = 2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Render images (V, H, W, 3) in [0, 1] and per-object visibility masks {name: (V, H, W) bool}.

    ``recolour`` maps object names to a colour name from ``COLOURS`` or an RGB triple; every other object
    keeps its own colour. Only the pixels in a recoloured object's mask can change.

    Args:
        spec (SceneSpec): the scene.
        cameras (Cameras): the views to render.
        recolour (Mapping[str, str | tuple[float, float, float]] | None, default None): object name -> new
            colour (name or RGB); None: every object keeps its own.
        supersample (int, default 2): anti-aliasing samples per pixel side.
    """
    colours: dict[str, str | tuple[float, float, float]] = {obj.name: obj.colour for obj in spec.objects}
    for name, colour in (recolour or {}).items():
        if name not in colours:
            raise InvalidInputError(
                f"no object named {name!r} in the scene; use one of: {', '.join(colours)}"
            )
        colours[name] = colour
    gbuffer = cast(spec, cameras, supersample)
    return gbuffer.compose(colours), gbuffer.masks()
