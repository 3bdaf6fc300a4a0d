"""nerfacto with a relevance field (paper section 4.3) and an optional, offline-safe LPIPS metric."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from nerfstudio.utils import colormaps
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor, nn
from torch.nn import Parameter

from relevance_nerf2nerf.nerf.field import RELEVANCE, RelevanceNerfactoField, render_relevance

RELEVANCE_TARGET = "relevance_target"
"""Batch key: each ray's stored 2D relevance of its view, (R, 1) float in [0, 1]."""
RELEVANCE_VALID = "relevance_valid"
"""Batch key: (R, 1) bool, whether the ray's view has a relevance map yet."""
RELEVANCE_PARAM_GROUP = "relevance"


@dataclass
class RelevanceNerfactoModelConfig(NerfactoModelConfig):
    """nerfacto plus a relevance head; everything nerfacto has stays as it is."""

    _target: type = field(default_factory=lambda: RelevanceNerfactoModel)
    relevance_loss_mult: float = 1.0
    """Weight of the masked MSE between rendered relevance and the view's stored 2D relevance."""
    relevance_hidden_dim: int = 32
    """Width of the relevance head's hidden layers."""
    relevance_num_layers: int = 2
    """Number of linear layers of the relevance head."""
    relevance_num_frequencies: int = 4
    """Frequencies of the head's own positional encoding (0: geometry feature only)."""
    use_lpips: bool = True
    """Build torchmetrics' LPIPS for eval metrics (downloads AlexNet once; skipped with a warning offline)."""


class _LpipsUnavailable(nn.Module):
    """Stands in for LPIPS when it is disabled or cannot be built; its metric is dropped."""

    def forward(self, *_: Tensor) -> Tensor:
        return torch.tensor(float("nan"))


@contextmanager
def nerfacto_without_lpips() -> Iterator[None]:
    """nerfacto builds torchmetrics' LPIPS unconditionally, which downloads AlexNet: build a stand-in."""
    from torchmetrics.image import lpip

    original = lpip.LearnedPerceptualImagePatchSimilarity
    lpip.LearnedPerceptualImagePatchSimilarity = lambda **_: _LpipsUnavailable()  # type: ignore[assignment]
    try:
        yield
    finally:
        lpip.LearnedPerceptualImagePatchSimilarity = original  # type: ignore[assignment]


def masked_mse(prediction: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Mean squared error over the valid entries only (0 when none is valid, still in the graph)."""
    valid = valid.to(prediction.dtype)
    return torch.sum(valid * (prediction - target) ** 2) / valid.sum().clamp(min=1.0)


class RelevanceNerfactoModel(NerfactoModel):
    """nerfacto whose field also predicts relevance; output ``relevance`` in train and eval mode."""

    config: RelevanceNerfactoModelConfig
    field: RelevanceNerfactoField

    def populate_modules(self):
        with nerfacto_without_lpips():
            super().populate_modules()
        self.lpips = self._build_lpips() if self.config.use_lpips else _LpipsUnavailable()
        cfg = self.config
        self.field = RelevanceNerfactoField(  # same arguments as nerfacto's field, plus the head
            self.scene_box.aabb,
            hidden_dim=cfg.hidden_dim,
            num_levels=cfg.num_levels,
            max_res=cfg.max_res,
            base_res=cfg.base_res,
            features_per_level=cfg.features_per_level,
            log2_hashmap_size=cfg.log2_hashmap_size,
            hidden_dim_color=cfg.hidden_dim_color,
            hidden_dim_transient=cfg.hidden_dim_transient,
            spatial_distortion=self.field.spatial_distortion,
            num_images=self.num_train_data,
            use_pred_normals=cfg.predict_normals,
            use_average_appearance_embedding=cfg.use_average_appearance_embedding,
            appearance_embedding_dim=cfg.appearance_embed_dim if cfg.use_appearance_embedding else 0,
            average_init_density=cfg.average_init_density,
            implementation=cfg.implementation,
            relevance_hidden_dim=cfg.relevance_hidden_dim,
            relevance_num_layers=cfg.relevance_num_layers,
            relevance_num_frequencies=cfg.relevance_num_frequencies,
        )

    @staticmethod
    def _build_lpips() -> nn.Module:
        try:
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            return LearnedPerceptualImagePatchSimilarity(normalize=True)
        except Exception as error:  # no network for AlexNet's weights: train and evaluate without LPIPS
            CONSOLE.print(f"[yellow]LPIPS unavailable ({type(error).__name__}); eval metrics omit it.")
            return _LpipsUnavailable()

    def get_param_groups(self) -> dict[str, list[Parameter]]:
        groups = super().get_param_groups()
        relevance = list(self.field.relevance_head.parameters())
        relevance_ids = {id(p) for p in relevance}
        groups["fields"] = [p for p in groups["fields"] if id(p) not in relevance_ids]
        groups[RELEVANCE_PARAM_GROUP] = relevance
        return groups

    def get_outputs(self, ray_bundle: RayBundle):
        outputs = super().get_outputs(ray_bundle)
        samples = self.field.last_relevance_samples
        assert samples is not None, "the field did not run"
        self.field.last_relevance_samples = None
        outputs[RELEVANCE] = render_relevance(samples)
        return outputs

    def relevance_loss(self, outputs: dict, batch: dict) -> Tensor | None:
        """Masked MSE against the stored relevance of each ray's view, or None without relevance data."""
        if RELEVANCE_TARGET not in batch:
            return None
        target = batch[RELEVANCE_TARGET].to(self.device)
        valid = batch[RELEVANCE_VALID].to(self.device)
        return self.config.relevance_loss_mult * masked_mse(outputs[RELEVANCE], target, valid)

    def get_loss_dict(self, outputs, batch, metrics_dict=None):
        loss_dict = super().get_loss_dict(outputs, batch, metrics_dict)
        if self.training:
            loss = self.relevance_loss(outputs, batch)
            if loss is not None:
                loss_dict["relevance_loss"] = loss
        return loss_dict

    def get_image_metrics_and_images(self, outputs, batch):
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        if isinstance(self.lpips, _LpipsUnavailable):
            metrics.pop("lpips", None)
        images[RELEVANCE] = colormaps.apply_colormap(outputs[RELEVANCE])
        return metrics, images
