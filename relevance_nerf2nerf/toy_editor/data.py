"""Training and held-out data for the toy instruction editor: (render, instruction, recoloured render).

One geometry cast per view gives the source image and every recolouring of it (``GBuffer.compose``), so
the edited image differs from the source exactly on the named object's pixels.

*Confusable* views repaint the other objects so that one of them already has the requested colour and
another has the named object's own colour ("make the cube blue" beside a blue sphere and a red cylinder
when the cube is red): colour alone then cannot tell which object the instruction names, only its shape can.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from relevance_nerf2nerf.diffusion.images import to_uint8
from relevance_nerf2nerf.scenes.render import cast
from relevance_nerf2nerf.scenes.spec import COLOURS, SHAPES, SceneObject, random_cameras, random_scene_spec

TEMPLATES: tuple[str, ...] = ("make the {shape} {colour}", "turn the {shape} {colour}")
# Words the toy editor's tokenizer keeps as single tokens.
VOCABULARY: tuple[str, ...] = ("make", "turn", "the", *SHAPES, *COLOURS)
# Held-out scenes use seeds from here on; training scenes use seeds below it.
HELD_OUT_SEED_OFFSET = 1_000_000


def instruction(shape: str, colour: str, template: int = 0) -> str:
    """The instruction text, e.g. "make the cube blue".

    Args:
        shape (str): the object's shape word.
        colour (str): the requested colour name.
        template (int, default 0): index into ``TEMPLATES``.
    """
    return TEMPLATES[template].format(shape=shape, colour=colour)


@dataclass
class Triplets:
    """``sources`` (N, 3, H, W) uint8; edit k turns ``sources[source_index[k]]`` into ``targets[k]``."""

    sources: torch.Tensor
    targets: torch.Tensor
    source_index: torch.Tensor  # (K,) int64
    instructions: list[str]
    object_masks: torch.Tensor  # (K, H, W) bool: pixels of the edited object
    target_colours: list[str]

    def __len__(self) -> int:
        return len(self.instructions)


def confusable_colours(
    objects: tuple[SceneObject, ...], target: SceneObject, colour: str, rng: random.Random
) -> dict[str, str]:
    """Object name -> colour: ``target`` keeps its colour; of the others (in random order) one takes the
    requested ``colour`` and one the target's own colour, the rest keep theirs.

    Args:
        objects (tuple[SceneObject, ...]): the scene's objects.
        target (SceneObject): the object the instruction names.
        colour (str): the requested colour.
        rng (random.Random): picks which other objects are repainted.
    """
    colours = {obj.name: obj.colour for obj in objects}
    others = [obj.name for obj in objects if obj.name != target.name]
    rng.shuffle(others)
    for name, paint in zip(others, (colour, target.colour), strict=False):
        colours[name] = paint
    return colours


def _uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) floats in [0, 1] -> (N, 3, H, W) uint8, the layout the triplets are stored in."""
    return to_uint8(images).permute(0, 3, 1, 2).contiguous()


def make_triplets(
    num_scenes: int,
    *,
    views_per_scene: int = 4,
    edits_per_view: int = 2,
    size: int = 64,
    seed: int = 0,
    seed_offset: int = 0,
    confusable_fraction: float = 0.0,
) -> Triplets:
    """Random scenes (seeds ``seed_offset + seed * num_scenes + i``) seen from random cameras, each view
    edited ``edits_per_view`` times: a random object recoloured to a random other named colour.

    Args:
        num_scenes (int): number of random scenes.
        views_per_scene (int, default 4): random cameras per scene.
        edits_per_view (int, default 2): edits of each ordinary view.
        size (int, default 64): image width and height in pixels.
        seed (int, default 0): seeds the scene seeds, the choice of objects, colours and templates.
        seed_offset (int, default 0): added to every scene seed (held-out data uses ``HELD_OUT_SEED_OFFSET``).
        confusable_fraction (float, default 0): share of views (of scenes with 3+ objects) that are instead
            repainted by :func:`confusable_colours` for one edit of a random visible object; the source is
            that repainted view.
    """
    rng = random.Random(seed)
    sources, targets, source_index, texts, masks, colours = [], [], [], [], [], []
    for i in range(num_scenes):
        scene_seed = seed_offset + seed * num_scenes + i
        spec = random_scene_spec(scene_seed, num_objects=rng.choice((2, 3, 3, 4)))
        gbuffer = cast(spec, random_cameras(views_per_scene, size, size, seed=scene_seed))
        base = {obj.name: obj.colour for obj in spec.objects}
        object_masks = gbuffer.masks()
        first = sum(len(s) for s in sources)
        sources.append(_uint8(gbuffer.compose(base)))
        for view in range(views_per_scene):
            visible = [o for o in spec.objects if object_masks[o.name][view].sum() >= 6]
            if not visible:
                continue
            if len(spec.objects) >= 3 and rng.random() < confusable_fraction:
                obj = rng.choice(visible)
                colour = rng.choice([c for c in COLOURS if c != obj.colour])
                painted = confusable_colours(spec.objects, obj, colour, rng)
                sources.append(_uint8(gbuffer.compose(painted)[view : view + 1]))
                targets.append(_uint8(gbuffer.compose({**painted, obj.name: colour})[view : view + 1]))
                source_index.append(sum(len(s) for s in sources) - 1)
                texts.append(instruction(obj.shape, colour, rng.randrange(len(TEMPLATES))))
                masks.append(object_masks[obj.name][view])
                colours.append(colour)
                continue
            for _ in range(edits_per_view):
                obj = rng.choice(visible)
                colour = rng.choice([c for c in COLOURS if c != obj.colour])
                edited = gbuffer.compose({**base, obj.name: colour})
                targets.append(_uint8(edited[view : view + 1]))
                source_index.append(first + view)
                texts.append(instruction(obj.shape, colour, rng.randrange(len(TEMPLATES))))
                masks.append(object_masks[obj.name][view])
                colours.append(colour)
    return Triplets(
        sources=torch.cat(sources),
        targets=torch.cat(targets),
        source_index=torch.tensor(source_index, dtype=torch.int64),
        instructions=texts,
        object_masks=torch.stack(masks),
        target_colours=colours,
    )
