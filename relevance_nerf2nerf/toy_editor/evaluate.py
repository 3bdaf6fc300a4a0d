"""Does the toy editor really edit? Measured on held-out scenes through the public ``load_editor``.

For each held-out (render, "make the <shape> <colour>") pair, the edited object's mean colour (over its
ground-truth mask) is compared with the same object rendered in every named colour: a *hit* is when the
nearest one is the requested colour; the *colour error* is the RGB distance to the requested one. Plain
IP2P-style editing (tau = 0) and relevance-guided editing (tau = 0.5) are both measured, with the PSNR
outside the object against the input (how much the edit drifts elsewhere) and the relevance mask's IoU with
the object.

    python -m relevance_nerf2nerf.toy_editor.evaluate [--model-dir DIR] [--num-samples 24]
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from relevance_nerf2nerf.assets import TOY_EDITOR_DIR
from relevance_nerf2nerf.diffusion.images import psnr
from relevance_nerf2nerf.scenes.render import cast
from relevance_nerf2nerf.scenes.spec import COLOURS, random_cameras, random_scene_spec
from relevance_nerf2nerf.toy_editor.data import HELD_OUT_SEED_OFFSET, instruction


@dataclass
class HeldOutSample:
    image: torch.Tensor  # (1, 3, H, W) float in [0, 1]
    instruction: str
    target_colour: str
    mask: torch.Tensor  # (H, W) bool, the named object
    references: dict[str, torch.Tensor]  # colour name -> (3,) mean colour of the object rendered in it


def held_out_samples(num_samples: int, *, seed: int = 0, size: int = 64) -> list[HeldOutSample]:
    """One view of each of ``num_samples`` unseen scenes, with a random recolouring instruction."""
    gen = torch.Generator().manual_seed(seed)
    samples = []
    scene_seed = HELD_OUT_SEED_OFFSET + 10_000 * seed
    while len(samples) < num_samples:
        scene_seed += 1
        spec = random_scene_spec(scene_seed, num_objects=3)
        gbuffer = cast(spec, random_cameras(1, size, size, seed=scene_seed))
        masks = gbuffer.masks()
        visible = [o for o in spec.objects if masks[o.name][0].sum() >= 20]
        if not visible:
            continue
        obj = visible[int(torch.randint(len(visible), (1,), generator=gen))]
        others = [c for c in COLOURS if c != obj.colour]
        colour = others[int(torch.randint(len(others), (1,), generator=gen))]
        base = {o.name: o.colour for o in spec.objects}
        mask = masks[obj.name][0]
        references = {c: gbuffer.compose({**base, obj.name: c})[0][mask].mean(0) for c in COLOURS}
        image = gbuffer.compose(base).permute(0, 3, 1, 2)
        image = (image * 255).round() / 255  # what a PNG on disk holds
        samples.append(HeldOutSample(image, instruction(obj.shape, colour), colour, mask, references))
    return samples


def score_edit(sample: HeldOutSample, edited: torch.Tensor) -> dict[str, float]:
    """Hit, colour error and PSNR outside the object for one edited image (1, 3, H, W)."""
    pixels = edited[0].permute(1, 2, 0)
    mean = pixels[sample.mask].mean(0)
    distances = {c: (mean - ref).norm().item() for c, ref in sample.references.items()}
    nearest = min(distances, key=distances.__getitem__)
    outside = ~sample.mask
    src = sample.image[0].permute(1, 2, 0)
    return {
        "hit": float(nearest == sample.target_colour),
        "colour_error": distances[sample.target_colour],
        "psnr_outside": psnr(pixels[outside], src[outside]),
    }


def evaluate_editor(
    model_dir: str | Path = TOY_EDITOR_DIR,
    *,
    num_samples: int = 24,
    seed: int = 0,
    num_steps: int = 20,
    text_guidance: float = 7.5,
    image_guidance: float = 1.5,
    thresholds: tuple[float, ...] = (0.0, 0.5),
    log: Callable[[str], None] = print,
) -> dict:
    """Edit held-out renders with the editor at ``model_dir`` and report hit rate and colour error per tau."""
    from relevance_nerf2nerf.diffusion.editor import load_editor

    editor = load_editor(model_dir)
    samples = held_out_samples(num_samples, seed=seed)
    copy_error = sum(score_edit(s, s.image)["colour_error"] for s in samples) / len(samples)
    results: dict = {"num_samples": len(samples), "num_steps": num_steps, "text_guidance": text_guidance,
                     "image_guidance": image_guidance, "copy_input_colour_error": copy_error}  # fmt: skip
    ious = []
    for tau in thresholds:
        scores = []
        for i, sample in enumerate(samples):
            generator = torch.Generator().manual_seed(seed * 1000 + i)
            result = editor.edit(
                sample.image, sample.instruction, mask_threshold=tau, text_guidance=text_guidance,
                image_guidance=image_guidance, num_steps=num_steps, generator=generator,
            )  # fmt: skip
            scores.append(score_edit(sample, result.image))
            if tau > 0:
                mask = result.mask[0, 0]
                ious.append(((mask & sample.mask).sum() / (mask | sample.mask).sum().clamp(min=1)).item())
        name = "plain" if tau == 0 else f"relevance_tau{tau:g}"
        results[name] = {key: sum(s[key] for s in scores) / len(scores) for key in scores[0]}
        log(f"{name}: {json.dumps(results[name])}")
    if ious:
        results["relevance_mask_iou"] = sum(ious) / len(ious)
    iou = results.get("relevance_mask_iou", 0.0)
    log(f"copy-the-input colour error {copy_error:.3f}; relevance mask IoU {iou:.3f}")
    return results


def main() -> None:
    import tyro

    def run(
        model_dir: Path = TOY_EDITOR_DIR,
        num_samples: int = 24,
        seed: int = 0,
        num_steps: int = 20,
        text_guidance: float = 7.5,
        image_guidance: float = 1.5,
        output: Path | None = None,
    ) -> None:
        """Evaluate an editor directory on held-out synthetic scenes."""
        metrics = evaluate_editor(model_dir, num_samples=num_samples, seed=seed, num_steps=num_steps,
                                  text_guidance=text_guidance, image_guidance=image_guidance)  # fmt: skip
        if output is not None:
            output.write_text(json.dumps(metrics, indent=2))

    tyro.cli(run)


if __name__ == "__main__":
    main()
