"""``relevance-scene``: write a synthetic scene as a nerfstudio dataset with ground-truth object masks.

    relevance-scene --output-dir data/scene0 --seed 0 --num-views 24 --width 64 --height 64

Then ``ns-train nerfacto-tiny --data data/scene0`` (or any nerfstudio method) trains on it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from relevance_nerf2nerf.errors import RelevanceError


@dataclass
class SceneCommand:
    """Generate a random synthetic scene (objects on a checkerboard floor) deterministically from a seed."""

    output_dir: Path
    """Directory to write transforms.json, images/, masks/<object>/ and scene.json into."""
    seed: int = 0
    """Scene seed: the same seed and sizes always write byte-identical files."""
    num_views: int = 24
    """Number of cameras on the ring around the scene."""
    width: int = 64
    """Image width in pixels."""
    height: int = 64
    """Image height in pixels."""
    num_objects: int = 3
    """Number of objects (1-4, one per shape: sphere, cube, cylinder, cone)."""
    supersample: int = 2
    """Anti-aliasing: supersample x supersample rays per pixel."""


def main(argv: list[str] | None = None) -> int:
    from relevance_nerf2nerf.scenes import generate_scene

    command = tyro.cli(SceneCommand, args=argv)
    try:
        info = generate_scene(
            command.output_dir,
            seed=command.seed,
            num_views=command.num_views,
            width=command.width,
            height=command.height,
            num_objects=command.num_objects,
            supersample=command.supersample,
        )
    except RelevanceError as err:
        print(f"relevance-scene: error: {err}", file=sys.stderr)
        return 2
    objects = ", ".join(f"{o.colour} {o.shape}" for o in info.spec.objects)
    print(f"wrote {len(info.image_paths)} views of a scene with a {objects} to {info.output_dir}")
    return 0


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
