"""Measuring edits the way the paper does (CLIP similarities, Table 1 / Fig. 4) and against ground truth
(PSNR / SSIM outside the edited object, per-object colour change, relevance IoU). Used by ``relevance-eval``,
``relevance-demo`` and ``benchmarks/bench_localisation.py``.

- ``metrics``: pixel metrics in float (PSNR / SSIM outside a mask, LPIPS if its weights are local, colour
  change, nearest named colour, IoU);
- ``clip``: CLIP text-image / directional / image similarity, frame and edit consistency;
- ``ground_truth``: the generator's masks and colour references, and every ground-truth metric of an edit;
- ``strength``: comparing edits at matched strength (figures read off recorded curves at one target colour
  error) and the curves plot;
- ``regions``: the one region ``relevance-eval scene`` excludes for every run it compares;
- ``render``: renders of the same cameras from trained nerfstudio runs (nerfstudio imported lazily);
- ``sheets``: contact sheets and GIFs;
- ``scene_eval`` / ``image_eval``: the work of ``relevance-eval scene`` / ``images`` (every input checked
  before a model loads, outputs written whole or not at all through ``relevance_nerf2nerf.outputs``).
"""
