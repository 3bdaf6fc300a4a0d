"""nerfacto with a relevance field (paper section 4.3): the nerfacto scene model of the editing loop.

The relevance head reads the main nerfacto field's geometry feature (``density_embedding``) DETACHED, plus an
optional cheap frequency encoding of the (detached) sample position, so inconsistent 2D relevance maps can
never move density, proposal networks or colour. It is rendered as ``sum_i w_i r_i`` with the main field's
weights, computed from the detached density (a plain weighted sum, like nerfstudio's ``SemanticRenderer``:
``RGBRenderer`` asserts three channels). LPIPS is optional and offline-safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.field_components.encodings import NeRFEncoding
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.fields.nerfacto_field import NerfactoField
from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from torch import Tensor, nn
from torch.nn import Parameter

from relevance_nerf2nerf.nerf.relevance import (
    RELEVANCE,
    RELEVANCE_PARAM_GROUP,
    RELEVANCE_TARGET,
    RELEVANCE_VALID,
    RelevanceModelMixin,
    build_lpips,
    masked_mse,
    without_lpips_download,
)

nerfacto_without_lpips = without_lpips_download
"""The former name of :func:`~relevance_nerf2nerf.nerf.relevance.without_lpips_download`."""


class RelevanceHead(nn.Module):
    """Small MLP with a sigmoid: (geometry feature, position) -> r in [0, 1]."""

    def __init__(
        self, geo_feat_dim: int, hidden_dim: int = 32, num_layers: int = 2, num_frequencies: int = 4
    ):
        super().__init__()
        self.encoding = (
            NeRFEncoding(
                in_dim=3,
                num_frequencies=num_frequencies,
                min_freq_exp=0.0,
                max_freq_exp=float(num_frequencies - 1),
                include_input=True,
            )
            if num_frequencies > 0
            else None
        )
        in_dim = geo_feat_dim + (self.encoding.get_out_dim() if self.encoding is not None else 0)
        layers: list[nn.Module] = []
        for _ in range(num_layers - 1):
            layers += [nn.Linear(in_dim, hidden_dim), nn.ReLU()]
            in_dim = hidden_dim
        layers.append(nn.Linear(in_dim, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, geo_features: Tensor, positions: Tensor) -> Tensor:
        """``geo_features`` (..., F) and ``positions`` (..., 3) in [0, 1] -> relevance (..., 1).

        Both inputs are detached here: the relevance loss only ever trains this head.
        """
        features = [geo_features.detach().float()]
        if self.encoding is not None:
            features.append(self.encoding(positions.detach().float() * 2.0 - 1.0))
        return torch.sigmoid(self.mlp(torch.cat(features, dim=-1)))


@dataclass
class RelevanceSamples:
    """What rendering the relevance needs from one field evaluation."""

    ray_samples: RaySamples
    density: Tensor  # (R, S, 1), detached
    relevance: Tensor  # (R, S, 1)


class RelevanceNerfactoField(NerfactoField):
    """``NerfactoField`` plus a relevance head on its detached geometry feature.

    nerfacto's model discards the field outputs once RGB is rendered, so ``forward`` keeps the samples
    the relevance renderer needs in ``last_relevance_samples`` (read once by the model, then cleared).
    """

    def __init__(
        self,
        *args,
        relevance_hidden_dim: int = 32,
        relevance_num_layers: int = 2,
        relevance_num_frequencies: int = 4,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.relevance_head = RelevanceHead(
            self.geo_feat_dim, relevance_hidden_dim, relevance_num_layers, relevance_num_frequencies
        )
        self.last_relevance_samples: RelevanceSamples | None = None

    def get_outputs(self, ray_samples: RaySamples, density_embedding: Tensor | None = None) -> dict:
        outputs = super().get_outputs(ray_samples, density_embedding=density_embedding)
        assert density_embedding is not None
        shape = ray_samples.frustums.shape
        positions = self._sample_locations.view(-1, 3)  # normalised positions set by get_density
        relevance = self.relevance_head(density_embedding.view(-1, self.geo_feat_dim), positions)
        outputs[RELEVANCE] = relevance.view(*shape, 1)
        return outputs

    def forward(self, ray_samples: RaySamples, compute_normals: bool = False) -> dict:
        outputs = super().forward(ray_samples, compute_normals=compute_normals)
        self.last_relevance_samples = RelevanceSamples(
            ray_samples=ray_samples,
            density=outputs[FieldHeadNames.DENSITY].detach(),
            relevance=outputs[RELEVANCE],
        )
        return outputs


def render_relevance(samples: RelevanceSamples) -> Tensor:
    """Paper 4.3: R(ray) = sum_i w_i r_i with the main field's weights w_i from the detached density.

    Args:
        samples (RelevanceSamples): the ray samples' relevance values and weights.
    """
    weights = samples.ray_samples.get_weights(samples.density).detach()
    return torch.sum(weights * samples.relevance, dim=-2)

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


class RelevanceNerfactoModel(RelevanceModelMixin, NerfactoModel):
    """nerfacto whose field also predicts relevance; output ``relevance`` in train and eval mode."""

    config: RelevanceNerfactoModelConfig
    field: RelevanceNerfactoField

    def populate_modules(self):
        with without_lpips_download():
            super().populate_modules()
        self.lpips = build_lpips(self.config.use_lpips)
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

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> list[TrainingCallback]:
        """nerfacto's callbacks. With ``use_proposal_weight_anneal`` off (the editing presets) the proposal
        sampler still counts steps for its update schedule, but its weights are never annealed again: an edit
        starts from a trained base whose proposal networks are sharp, and annealing them from the edit's
        step 0 would flatten the sampling and blur every render of the first iterations."""
        callbacks = super().get_training_callbacks(training_callback_attributes)
        if not self.config.use_proposal_weight_anneal:
            callbacks.append(
                TrainingCallback(
                    where_to_run=[TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                    update_every_num_iters=1,
                    func=self.proposal_sampler.step_cb,
                )
            )
        return callbacks

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

