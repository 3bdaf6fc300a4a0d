"""Synthetic scenes: analytic objects on a checkerboard floor, rendered by vectorised ray casting into a
nerfstudio dataset with per-object ground-truth masks (deterministic from a seed)."""

from relevance_nerf2nerf.scenes.dataset import SceneInfo, generate_scene, load_scene, write_scene
from relevance_nerf2nerf.scenes.render import GBuffer, cast, render_views
from relevance_nerf2nerf.scenes.spec import (
    COLOURS,
    SHAPES,
    Cameras,
    SceneObject,
    SceneSpec,
    concatenate_cameras,
    held_out_cameras,
    random_cameras,
    random_scene_spec,
    ring_cameras,
)

__all__ = [
    "COLOURS",
    "SHAPES",
    "Cameras",
    "GBuffer",
    "SceneInfo",
    "SceneObject",
    "SceneSpec",
    "cast",
    "concatenate_cameras",
    "generate_scene",
    "held_out_cameras",
    "load_scene",
    "random_cameras",
    "random_scene_spec",
    "render_views",
    "ring_cameras",
    "write_scene",
]
