"""What both scene models share about relevance: output and batch names, the optimizer group, the loss.

The nerfacto model (relevance head, ``nerfacto_model.py``) and the splatfacto model (per-Gaussian relevance,
``splatfacto_model.py``) render the same ``relevance`` output and train it with the same masked loss
against each view's stored 2D relevance map, so the update loop (datamanager, pipeline) serves both.
Both also build LPIPS only when its weights can be had (:func:`without_lpips_download`, :func:`build_lpips`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from nerfstudio.utils import colormaps
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor, nn

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


class LpipsUnavailable(nn.Module):
    """Stands in for LPIPS when it is disabled or cannot be built; its metric is dropped."""

    def forward(self, *_: Tensor) -> Tensor:
        return torch.tensor(float("nan"))


@contextmanager
def without_lpips_download() -> Iterator[None]:
    """Build a stand-in wherever nerfstudio's models build torchmetrics' LPIPS unconditionally (which
    downloads AlexNet's weights): nerfacto and splatfacto do it in ``populate_modules``."""
    from torchmetrics.image import lpip

    original = lpip.LearnedPerceptualImagePatchSimilarity
    lpip.LearnedPerceptualImagePatchSimilarity = lambda **_: LpipsUnavailable()  # type: ignore[assignment]
    try:
        yield
    finally:
        lpip.LearnedPerceptualImagePatchSimilarity = original  # type: ignore[assignment]


def build_lpips(enabled: bool) -> nn.Module:
    """torchmetrics' LPIPS (AlexNet) when ``enabled`` and its weights can be had, else
    :class:`LpipsUnavailable` (one console line says why: offline, AlexNet's weights cannot be downloaded).

    Args:
        enabled (bool): the model config's ``use_lpips``.
    """
    if not enabled:
        return LpipsUnavailable()
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        return LearnedPerceptualImagePatchSimilarity(normalize=True)
    except Exception as error:  # no network for AlexNet's weights: train and evaluate without LPIPS
        CONSOLE.print(f"[yellow]LPIPS unavailable ({type(error).__name__}); eval metrics omit it.")
        return LpipsUnavailable()


class RelevanceModelMixin:
    """What both scene models add to their nerfstudio model: the relevance loss in the loss dict (training
    only) and the colour-mapped relevance among the eval images, LPIPS dropped from the metrics when it is
    unavailable. Put it before the nerfstudio model class and implement ``relevance_loss(outputs, batch)``."""

    lpips: nn.Module

    def relevance_loss(self, outputs: dict, batch: dict) -> Tensor | None:
        """Masked MSE of the rendered relevance against the stored maps (None without relevance data).

        Args:
            outputs (dict): the model's outputs for the batch (with ``relevance``).
            batch (dict): the training batch (with the stored relevance of its views).
        """
        raise NotImplementedError

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> dict[str, Tensor]:
        """nerfstudio's losses of the model plus the relevance loss (training only, with relevance data).

        Args:
            outputs (dict[str, Tensor]): the model's outputs for the batch.
            batch (dict[str, Tensor]): the training batch.
            metrics_dict (dict[str, Tensor] | None, default None): nerfstudio's metrics of the batch.
        """
        loss_dict = super().get_loss_dict(outputs, batch, metrics_dict)  # type: ignore[misc]
        if self.training:  # type: ignore[attr-defined]
            loss = self.relevance_loss(outputs, batch)
            if loss is not None:
                loss_dict["relevance_loss"] = loss
        return loss_dict

    def get_image_metrics_and_images(self, outputs, batch):
        """nerfstudio's evaluation metrics and images plus the colour-mapped relevance render.

        Args:
            outputs (dict[str, Tensor]): the model's outputs for one evaluation image.
            batch (dict[str, Tensor]): the evaluation batch (the ground-truth image).
        """
        metrics, images = super().get_image_metrics_and_images(outputs, batch)  # type: ignore[misc]
        if isinstance(self.lpips, LpipsUnavailable):
            metrics.pop("lpips", None)
        images[RELEVANCE] = colormaps.apply_colormap(outputs[RELEVANCE])
        return metrics, images
