"""Files shipped with the package: the trained toy instruction editor (diffusers IP2P format)."""

from pathlib import Path

TOY_EDITOR_DIR = Path(__file__).parent / "toy-editor"

TOY_EDITOR_IQR_RATIO = 3.5
"""Scene relevance IQR ratio for the toy editor (``relevance-demo``'s default with it), chosen on two
validation sets of 24 held-out scenes (``held_out_samples`` seeds 2 and 3, not the reported sets 0 and 1):
of 1.5 / 2 / 2.5 / 3 / 3.5 / 4 / 5, ratio 3.5 meets the most of issue 8's targets there (7 of 8: target
>= 0.85, other objects <= 0.35, background <= 0.25 in both, mask IoU >= 0.5 in one), tied with 5, which
pushes the target under 0.85 in one set; smaller ratios saturate the other objects (``evaluation.json``:
``iqr_ratio_validation``). The real IP2P keeps the authors' 2."""
