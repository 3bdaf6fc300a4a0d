"""nerfstudio method specifications for Gaussian splats (entry point group ``nerfstudio.method_configs``).

- ``splatfacto-tiny``: splatfacto at a CPU preset (pure-torch reference rasterizer, about 2k Gaussians, no
  LPIPS download): the base model for ``relevance-splatfacto-tiny``, as ``nerfacto-tiny`` is for nerfacto;
- ``relevance-splatfacto``: Watch Your Steps editing of a splatfacto run (GPU, gsplat), started with
  ``--pipeline.base-checkpoint <splatfacto run>`` or ``--load-dir <splatfacto run>/nerfstudio_models``;
- ``relevance-splatfacto-tiny``: the same at the CPU preset, for the tests and the demo;
- ``splatfacto-cpu``, ``relevance-splatfacto-cpu``: aliases of the two CPU presets.

The editing loop is the nerfacto methods' (same pipeline, flags, Instruct-NeRF2NeRF aliases, edit state,
export, resume); only the model (per-Gaussian relevance) and the datamanager (full images) differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from method_configs.relevance_nerf2nerf import (
    In2NAliasedPipelineConfig,
    cpu_alias,
    cpu_base_trainer_config,
    edit_trainer_config,
)
from relevance_nerf2nerf.nerf.datamanager import RelevanceFullImageDataManagerConfig
from relevance_nerf2nerf.nerf.dataparser import PointCloudDataParserConfig
from relevance_nerf2nerf.nerf.relevance import RELEVANCE_PARAM_GROUP
from relevance_nerf2nerf.nerf.splatfacto_model import RelevanceSplatfactoModelConfig
from relevance_nerf2nerf.nerf.trainer import RunLengthDecaySchedulerConfig

TINY_BASE_ITERATIONS = 1500
"""Iterations of ``splatfacto-tiny`` (the CPU base)."""


@dataclass
class RelevanceSplatfactoPipelineConfig(In2NAliasedPipelineConfig):
    """The scene-editing pipeline over splatfacto with per-Gaussian relevance and full-image batches."""

    datamanager: RelevanceFullImageDataManagerConfig = field(
        default_factory=lambda: RelevanceFullImageDataManagerConfig(dataparser=PointCloudDataParserConfig())
    )
    """Full-image datamanager with the edit state; the capture's point cloud seeds a fresh model."""
    model: RelevanceSplatfactoModelConfig = field(default_factory=RelevanceSplatfactoModelConfig)
    """splatfacto plus one relevance logit per Gaussian."""


def _cpu_model() -> RelevanceSplatfactoModelConfig:
    """splatfacto for small scenes on a CPU: the reference rasterizer, full resolution from the start (a
    64 px view would otherwise train at 16 px), modest densification on plain positional gradients (absolute
    ones come only from gsplat's CUDA backward), refinement from step 200 until the base's last step, no
    splitting by screen size (at 64 px every Gaussian wider than 3 px would split: 2k Gaussians became 34k in
    1000 steps), view-independent colours (SH degree 0: the generated scenes are Lambertian), 2k random
    points when the capture has no point cloud, and no LPIPS download."""
    return RelevanceSplatfactoModelConfig(
        renderer="reference",
        num_downscales=0,
        use_absgrad=False,
        densify_grad_thresh=0.0008,
        stop_screen_size_at=0,
        stop_split_at=TINY_BASE_ITERATIONS,
        warmup_length=200,
        sh_degree=0,
        num_random=2000,
        random_scale=2.0,
        use_lpips=False,
    )


def _optimizers(means_decay_steps: int | None) -> dict:
    """splatfacto's Adam settings plus the relevance logits' group; ``means_decay_steps`` None: the positions'
    learning rate decays over the run's planned total (an edit's schedules span the edit)."""

    def adam(lr: float, scheduler=None) -> dict:
        return {"optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15), "scheduler": scheduler}

    if means_decay_steps is None:
        means = RunLengthDecaySchedulerConfig(lr_final=1.6e-6)
    else:
        means = ExponentialDecaySchedulerConfig(lr_final=1.6e-6, max_steps=means_decay_steps)
    return {
        "means": adam(1.6e-4, means),
        "features_dc": adam(0.0025),
        "features_rest": adam(0.0025 / 20),
        "opacities": adam(0.05),
        "scales": adam(0.005),
        "quats": adam(0.001),
        "camera_opt": adam(1e-4, ExponentialDecaySchedulerConfig(lr_final=5e-7, max_steps=30000)),
        RELEVANCE_PARAM_GROUP: adam(0.1),  # a logit crosses from relevance_init to 0.5 in about 40 steps
    }


def _editing(
    name: str, model: RelevanceSplatfactoModelConfig, *, iterations: int, cpu: bool
) -> TrainerConfig:
    """A splatfacto editing preset (full-image batches, no mixed precision)."""
    cache = (
        "gpu"  # nerfstudio's "gpu" caches on the training device; its "cpu" cache pins memory (needs CUDA)
    )
    pipeline = RelevanceSplatfactoPipelineConfig(
        datamanager=RelevanceFullImageDataManagerConfig(
            dataparser=PointCloudDataParserConfig(), cache_images=cache
        ),
        model=model,
    )
    return edit_trainer_config(
        name, pipeline, _optimizers(None), iterations=iterations, cpu=cpu, mixed_precision=False
    )


splatfacto_tiny = MethodSpecification(
    config=cpu_base_trainer_config(
        "splatfacto-tiny",
        VanillaPipelineConfig(
            datamanager=FullImageDatamanagerConfig(
                dataparser=PointCloudDataParserConfig(), cache_images="gpu"
            ),
            model=_cpu_model(),
        ),
        _optimizers(TINY_BASE_ITERATIONS),
        iterations=TINY_BASE_ITERATIONS,
    ),
    description=(
        "CPU preset of splatfacto (pure-torch rasterizer, about 2k Gaussians, no LPIPS download): the base "
        "model for relevance-splatfacto-tiny."
    ),
)

relevance_splatfacto = MethodSpecification(
    config=_editing("relevance-splatfacto", RelevanceSplatfactoModelConfig(), iterations=4000, cpu=False),
    description=(
        "GPU preset. Watch Your Steps editing of Gaussian splats: a splatfacto run with per-Gaussian "
        "relevance (start with --pipeline.base-checkpoint or --load-dir of the splatfacto run)."
    ),
)

relevance_splatfacto_tiny = MethodSpecification(
    config=_editing("relevance-splatfacto-tiny", _cpu_model(), iterations=300, cpu=True),
    description=(
        "CPU preset. Watch Your Steps editing of a splatfacto-tiny run at toy scale (pure-torch rasterizer, "
        "300 iterations), for the demo and tests."
    ),
)

splatfacto_cpu = cpu_alias(splatfacto_tiny)
relevance_splatfacto_cpu = cpu_alias(relevance_splatfacto_tiny)
