"""The relevance field of paper section 4.3: a view-independent scalar r(x) in [0, 1].

The head reads the main nerfacto field's geometry feature (``density_embedding``) DETACHED, plus an
optional cheap frequency encoding of the (detached) sample position, so inconsistent 2D relevance maps
can never move density, proposal networks or colour. It is rendered as ``sum_i w_i r_i`` with the main
field's weights, computed from the detached density (a plain weighted sum, like nerfstudio's
``SemanticRenderer``: ``RGBRenderer`` asserts three channels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from nerfstudio.cameras.rays import RaySamples
from nerfstudio.field_components.encodings import NeRFEncoding
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.fields.nerfacto_field import NerfactoField
from torch import Tensor, nn

RELEVANCE = "relevance"
"""Key of the per-sample relevance in the field outputs and of the rendered relevance in model outputs."""


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
    """Paper 4.3: R(ray) = sum_i w_i r_i with the main field's weights w_i from the detached density."""
    weights = samples.ray_samples.get_weights(samples.density).detach()
    return torch.sum(weights * samples.relevance, dim=-2)
