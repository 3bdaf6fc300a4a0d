"""Training triplets of the toy editor: the edit changes exactly the named object, to the named colour."""

from __future__ import annotations

import random

import torch

from relevance_nerf2nerf.scenes import COLOURS, SHAPES
from relevance_nerf2nerf.scenes.spec import random_scene_spec
from relevance_nerf2nerf.toy_editor.data import TEMPLATES, confusable_colours, make_triplets


def test_triplets_recolour_exactly_the_named_object():
    data = make_triplets(4, views_per_scene=2, edits_per_view=2, size=64, seed=5)
    assert data.sources.shape == (8, 3, 64, 64) and data.sources.dtype == torch.uint8
    assert len(data) == data.targets.shape[0] == data.object_masks.shape[0] > 0
    for k, text in enumerate(data.instructions):
        verb, article, shape, colour = text.split()
        assert f"{verb} {article} {{shape}} {{colour}}" in TEMPLATES and shape in SHAPES and colour in COLOURS
        assert colour == data.target_colours[k]
        source, target = data.sources[data.source_index[k]], data.targets[k]
        changed = (source != target).any(dim=0)
        assert changed.any() and not (changed & ~data.object_masks[k]).any()
        # shading scales the albedo: the median chromaticity of the changed pixels is the requested colour's
        pixels = target.float()[:, changed]
        chroma = (pixels / pixels.sum(0).clamp(min=1)).median(dim=1).values
        distance = {c: (chroma - torch.tensor(rgb) / sum(rgb)).norm() for c, rgb in COLOURS.items()}
        assert min(distance, key=distance.__getitem__) == colour


def test_triplets_are_deterministic_in_the_seed():
    a, b = make_triplets(2, size=16, seed=1), make_triplets(2, size=16, seed=1)
    assert torch.equal(a.targets, b.targets) and a.instructions == b.instructions
    assert not torch.equal(a.sources, make_triplets(2, size=16, seed=2).sources)



def test_confusable_colours_repaint_two_distractors():
    spec = random_scene_spec(7, num_objects=4)
    target = spec.objects[1]
    for seed in range(5):
        painted = confusable_colours(spec.objects, target, "green" if target.colour != "green" else "red",
                                     random.Random(seed))  # fmt: skip
        colour = "green" if target.colour != "green" else "red"
        assert painted[target.name] == target.colour
        others = [painted[o.name] for o in spec.objects if o is not target]
        assert others.count(colour) >= 1 and others.count(target.colour) >= 1


def test_confusable_views_change_only_the_named_object():
    plain = make_triplets(6, views_per_scene=2, size=32, seed=3)
    data = make_triplets(6, views_per_scene=2, size=32, seed=3, confusable_fraction=1.0)
    assert len(data.sources) > len(plain.sources)  # repainted sources were added
    for k in range(len(data)):
        source, target = data.sources[data.source_index[k]], data.targets[k]
        changed = (source != target).any(dim=0)
        assert changed.any() and not (changed & ~data.object_masks[k]).any()
