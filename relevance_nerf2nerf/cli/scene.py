"""``relevance-scene``: write a synthetic scene as a nerfstudio dataset with ground-truth object masks.

    relevance-scene --output-dir data/scene0 --seed 0 --num-views 24 --width 64 --height 64

Then ``ns-train nerfacto-tiny --data data/scene0`` (or any nerfstudio method) trains on it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from relevance_nerf2nerf.cli.common import run_command
from relevance_nerf2nerf.outputs import check_new_output_dir, staged_output_dir


@dataclass
class SceneCommand:
    """Generate a random synthetic scene (objects on a checkerboard floor) deterministically from a seed."""

    output_dir: Path
    """New (or empty) folder to write transforms.json, images/, masks/<object>/ and scene.json into; a folder
    that already holds files is refused (nothing is overwritten). The folder appears complete or not at
    all."""
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
    num_held_out: int = 0
    """Evaluation cameras never trained on, on a second ring between the training cameras (nerfstudio's
    val/test split, with ground-truth masks); 0 leaves the split to nerfstudio."""


def check_scene_command(command: SceneCommand) -> None:
    """Every check before anything is written: the scene's settings and a new or empty --output-dir.

    Args:
        command (SceneCommand): the parsed command line.
    """
    from relevance_nerf2nerf.errors import InvalidInputError
    from relevance_nerf2nerf.scenes.spec import random_scene_spec, ring_cameras

    random_scene_spec(command.seed, command.num_objects)
    ring_cameras(command.num_views, command.width, command.height)
    if command.supersample < 1:
        raise InvalidInputError(f"supersample must be at least 1, got {command.supersample}")
    check_new_output_dir(command.output_dir)


def write_scene_folder(command: SceneCommand):
    """Generate the scene into a staging folder that becomes --output-dir whole (or not at all).

    Args:
        command (SceneCommand): the parsed command line.

    Returns the scene's ``SceneInfo`` (its paths name the staging folder).
    """
    from relevance_nerf2nerf.scenes import generate_scene

    check_scene_command(command)
    with staged_output_dir(command.output_dir) as staging:
        return generate_scene(
            staging,
            seed=command.seed,
            num_views=command.num_views,
            width=command.width,
            height=command.height,
            num_objects=command.num_objects,
            supersample=command.supersample,
            num_held_out=command.num_held_out,
        )


def _write_and_report(command: SceneCommand) -> None:
    info = write_scene_folder(command)
    objects = ", ".join(f"{o.colour} {o.shape}" for o in info.spec.objects)
    print(f"wrote {len(info.image_paths)} views of a scene with a {objects} to {command.output_dir}")


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and write the scene; errors: one line, exit code 2.

    Args:
        argv (list[str] | None, default None): the arguments (None: ``sys.argv[1:]``).
    """
    return run_command("relevance-scene", lambda: tyro.cli(SceneCommand, args=argv), _write_and_report)


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
