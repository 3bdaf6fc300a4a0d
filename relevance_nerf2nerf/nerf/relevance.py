"""What both scene models share about relevance: output and batch names, the optimizer group, the loss.

The nerfacto model (relevance head, ``nerfacto_model.py``) and the splatfacto model (per-Gaussian relevance,
``splatfacto_model.py``) render the same ``relevance`` output and train it with the same masked loss
against each view's stored 2D relevance map, so the update loop (datamanager, pipeline) serves both.
"""

from __future__ import annotations

import torch
from torch import Tensor

RELEVANCE = "relevance"
"""Key of the rendered relevance in model outputs (and of the per-sample relevance in nerfacto's field)."""
RELEVANCE_TARGET = "relevance_target"
"""Batch key: the stored 2D relevance of the view each pixel belongs to, float in [0, 1]."""
RELEVANCE_VALID = "relevance_valid"
"""Batch key: bool, whether that view has a relevance map yet."""
RELEVANCE_PARAM_GROUP = "relevance"
"""Name of the optimizer parameter group holding only the relevance parameters."""


def masked_mse(prediction: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Mean squared error over the valid entries only (0 when none is valid, still in the graph).

    Args:
        prediction (Tensor): rendered relevance, any shape.
        target (Tensor): stored relevance, the same shape.
        valid (Tensor): bool or {0, 1}, the same shape: which entries count.
    """
    valid = valid.to(prediction.dtype)
    return torch.sum(valid * (prediction - target) ** 2) / valid.sum().clamp(min=1.0)
