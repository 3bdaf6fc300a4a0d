"""nerfstudio method specifications (entry point group ``nerfstudio.method_configs``).

- ``nerfacto-tiny``: plain nerfacto reconstruction at the CPU preset (no LPIPS download): the base model;
- ``relevance-nerf2nerf``: the paper's scene editing, IP2P in fp32, LPIPS when available;
- ``relevance-nerf2nerf-small``: the same with IP2P in fp16, sliced attention, sliced/tiled VAE and the text
  encoder on the CPU (consumer GPUs);
- ``relevance-nerf2nerf-tiny``: the CPU preset used by the tests and the demo;
- ``nerfacto-cpu``, ``relevance-nerf2nerf-cpu``: aliases of the two CPU presets (:func:`cpu_alias`).

Importing this module allow-lists numpy's scalar classes for weights-only checkpoint loading, so
ns-render / ns-viewer / ns-eval load these methods' checkpoints on torch >= 2.6. All of them save their
checkpoints atomically (``RelevanceTrainerConfig``), so a run killed while saving still resumes.
diffusers is never imported here.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.configs.base_config import LocalWriterConfig, LoggingConfig, MachineConfig, ViewerConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification
from nerfstudio.utils.writer import EventName

from relevance_nerf2nerf.diffusion.settings import check_noise_range
from relevance_nerf2nerf.errors import RelevanceError, report_uncaught_errors_as_one_line
from relevance_nerf2nerf.nerf.checkpoints import allow_numpy_in_checkpoints
from relevance_nerf2nerf.nerf.datamanager import RelevanceDataManagerConfig
from relevance_nerf2nerf.nerf.nerfacto_model import RelevanceNerfactoModelConfig
from relevance_nerf2nerf.nerf.pipeline import RelevanceNerf2NerfPipelineConfig
from relevance_nerf2nerf.nerf.relevance import RELEVANCE_PARAM_GROUP
from relevance_nerf2nerf.nerf.trainer import (
    RelevanceTrainerConfig,
    RunLengthDecaySchedulerConfig,
    refuse_at_setup,
)

allow_numpy_in_checkpoints()
report_uncaught_errors_as_one_line()

# Instruct-NeRF2NeRF's pipeline flag -> ours (README: "Coming from Instruct-NeRF2NeRF").
IN2N_ALIASES = {
    "prompt": "instruction",
    "guidance_scale": "text_guidance",
    "image_guidance_scale": "image_guidance",
    "diffusion_steps": "edit_steps",
    "edit_rate": "edit_every",
    "edit_count": "views_per_update",
    "ip2p_device": "editor_device",
}


@dataclass
class In2NAliasedPipelineConfig(RelevanceNerf2NerfPipelineConfig):
    """Our pipeline config that also takes Instruct-NeRF2NeRF's flag names, mapped onto ours when the
    config is built (an alias given wins over our flag; the saved config.yml holds only our names)."""

    prompt: str | None = None
    """Instruct-NeRF2NeRF's name of --pipeline.instruction."""
    guidance_scale: float | None = None
    """Instruct-NeRF2NeRF's name of --pipeline.text-guidance."""
    image_guidance_scale: float | None = None
    """Instruct-NeRF2NeRF's name of --pipeline.image-guidance."""
    diffusion_steps: int | None = None
    """Instruct-NeRF2NeRF's name of --pipeline.edit-steps."""
    edit_rate: int | None = None
    """Instruct-NeRF2NeRF's name of --pipeline.edit-every."""
    edit_count: int | None = None
    """Instruct-NeRF2NeRF's name of --pipeline.views-per-update."""
    lower_bound: float | None = None
    """Instruct-NeRF2NeRF's name of the low end of --pipeline.edit-noise-range."""
    upper_bound: float | None = None
    """Instruct-NeRF2NeRF's name of the high end of --pipeline.edit-noise-range."""
    ip2p_device: str | None = None
    """Instruct-NeRF2NeRF's name of --pipeline.editor-device."""
    ip2p_use_full_precision: bool | None = None
    """Instruct-NeRF2NeRF's flag: True is --pipeline.editor-precision fp32, False fp16."""

    def __post_init__(self) -> None:
        for alias, ours in IN2N_ALIASES.items():
            if getattr(self, alias) is not None:
                setattr(self, ours, getattr(self, alias))
                setattr(self, alias, None)
        low, high = self.edit_noise_range
        if self.lower_bound is not None or self.upper_bound is not None:
            self.edit_noise_range = (
                low if self.lower_bound is None else self.lower_bound,
                high if self.upper_bound is None else self.upper_bound,
            )
            ours = "--pipeline.edit-noise-range"
            low_name = ours if self.lower_bound is None else "--pipeline.lower-bound"
            high_name = ours if self.upper_bound is None else "--pipeline.upper-bound"
            self.lower_bound = self.upper_bound = None
            try:  # checked here, where the flags the user typed are still known
                check_noise_range(self.edit_noise_range, low_name, high_name)
            except RelevanceError as error:
                refuse_at_setup(error)
        if self.ip2p_use_full_precision is not None:
            self.editor_precision = "fp32" if self.ip2p_use_full_precision else "fp16"
            self.ip2p_use_full_precision = None


def _logging() -> LoggingConfig:
    """Console stats without the rays/sec columns (nerfstudio's formatter crashes on their initial 0)."""
    stats = (EventName.ITER_TRAIN_TIME, EventName.ETA, EventName.CURR_TEST_PSNR)
    return LoggingConfig(local_writer=LocalWriterConfig(enable=True, stats_to_track=stats))


def _optimizers(max_steps: int | None) -> dict:
    """The parameter groups' Adam settings; ``max_steps`` None: every schedule decays over the run's planned
    total (``RunLengthDecaySchedulerConfig``), whatever --max-num-iterations / --total-iterations say."""

    def adam(lr: float, lr_final: float, steps: int | None) -> dict:
        scheduler = (
            RunLengthDecaySchedulerConfig(lr_final=lr_final)
            if max_steps is None
            else ExponentialDecaySchedulerConfig(lr_final=lr_final, max_steps=steps)
        )
        return {"optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15), "scheduler": scheduler}

    return {
        "proposal_networks": adam(1e-2, 1e-4, max_steps),
        "fields": adam(1e-2, 1e-4, max_steps),
        "camera_opt": adam(1e-3, 1e-4, 5000),
        RELEVANCE_PARAM_GROUP: adam(5e-3, 5e-4, max_steps),
    }


def _full_model(**overrides) -> RelevanceNerfactoModelConfig:
    """nerfstudio's `nerfacto` architecture, so its checkpoints load as the base."""
    return RelevanceNerfactoModelConfig(
        eval_num_rays_per_chunk=1 << 15,
        average_init_density=0.01,
        camera_optimizer=CameraOptimizerConfig(mode="SO3xR3"),
        **overrides,
    )


def _tiny_model() -> RelevanceNerfactoModelConfig:
    """The CPU preset (about 0.2 s per 512-ray iteration on a two-core CPU); `nerfacto-tiny` uses the same."""
    return RelevanceNerfactoModelConfig(
        eval_num_rays_per_chunk=1 << 12,
        average_init_density=0.01,
        num_proposal_samples_per_ray=(32, 16),
        num_nerf_samples_per_ray=16,
        num_levels=8,
        log2_hashmap_size=15,
        max_res=256,
        hidden_dim=32,
        hidden_dim_color=32,
        hidden_dim_transient=32,
        proposal_net_args_list=[
            {"hidden_dim": 16, "log2_hashmap_size": 14, "num_levels": 5, "max_res": 64, "use_linear": False},
            {"hidden_dim": 16, "log2_hashmap_size": 14, "num_levels": 5, "max_res": 128, "use_linear": False},
        ],
        implementation="torch",
        use_lpips=False,
        camera_optimizer=CameraOptimizerConfig(mode="SO3xR3"),
    )


def cpu_base_trainer_config(
    name: str, pipeline: VanillaPipelineConfig, optimizers: dict, *, iterations: int
) -> TrainerConfig:
    """The trainer settings the plain CPU base presets (``nerfacto-tiny``, ``splatfacto-tiny``) share.

    Args:
        name (str): the method's name (``ns-train <name>``).
        pipeline (VanillaPipelineConfig): the base's pipeline with its datamanager and model.
        optimizers (dict): the parameter groups' optimizer and scheduler settings.
        iterations (int): ``--max-num-iterations``.
    """
    return RelevanceTrainerConfig(
        method_name=name,
        steps_per_eval_batch=500,
        steps_per_eval_image=500,
        steps_per_save=500,
        max_num_iterations=iterations,
        mixed_precision=False,
        machine=MachineConfig(device_type="cpu"),
        pipeline=pipeline,
        optimizers=optimizers,
        logging=_logging(),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 12),
        vis="viewer",
    )


def edit_trainer_config(
    name: str,
    pipeline: VanillaPipelineConfig,
    optimizers: dict,
    *,
    iterations: int,
    cpu: bool,
    mixed_precision: bool,
) -> TrainerConfig:
    """The trainer settings every scene-editing preset shares, around its scene model's pipeline.

    Args:
        name (str): the method's name (``ns-train <name>``).
        pipeline (VanillaPipelineConfig): the editing pipeline with its datamanager and model.
        optimizers (dict): the parameter groups' optimizer and scheduler settings.
        iterations (int): ``--max-num-iterations``.
        cpu (bool): a CPU preset (saves every 50 steps, not 250).
        mixed_precision (bool): train in mixed precision.
    """
    return RelevanceTrainerConfig(
        method_name=name,
        steps_per_eval_batch=500,
        steps_per_eval_image=500,
        steps_per_save=50 if cpu else 250,
        max_num_iterations=iterations,
        mixed_precision=mixed_precision,
        machine=MachineConfig(device_type="cpu" if cpu else "cuda"),
        pipeline=pipeline,
        optimizers=optimizers,
        logging=_logging(),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    )


def _editing(
    name: str, model: RelevanceNerfactoModelConfig, *, rays: int, iterations: int, cpu: bool, **pipeline
) -> TrainerConfig:
    """A nerfacto editing preset: ``rays`` per batch, ``pipeline`` overrides the pipeline's defaults."""
    pipeline_config = In2NAliasedPipelineConfig(
        datamanager=RelevanceDataManagerConfig(
            dataparser=NerfstudioDataParserConfig(),
            train_num_rays_per_batch=rays,
            eval_num_rays_per_batch=rays,
        ),
        model=dataclasses.replace(model, use_proposal_weight_anneal=False),  # the base is trained
        **pipeline,
    )
    return edit_trainer_config(
        name, pipeline_config, _optimizers(None), iterations=iterations, cpu=cpu, mixed_precision=not cpu
    )


def cpu_alias(spec: MethodSpecification) -> MethodSpecification:
    """A ``<name>-tiny`` CPU preset registered again as ``<name>-cpu``, a name that says where it runs.

    nerfstudio keys methods by ``method_name``, so the alias holds a copy of the preset's config under its
    own name; the run's ``config.yml`` names the same classes and loads in ns-viewer and ns-render alike.

    Args:
        spec (MethodSpecification): the CPU preset, named ``<name>-tiny``.
    """
    name = spec.config.method_name
    if not name.endswith("-tiny"):
        raise ValueError(f"{name} is not a -tiny preset")
    config = copy.deepcopy(spec.config)
    config.method_name = name.removesuffix("-tiny") + "-cpu"
    return MethodSpecification(config=config, description=f"Alias of {name} (the CPU preset, same settings).")


nerfacto_tiny = MethodSpecification(
    config=cpu_base_trainer_config(
        "nerfacto-tiny",
        VanillaPipelineConfig(
            datamanager=VanillaDataManagerConfig(
                dataparser=NerfstudioDataParserConfig(),
                train_num_rays_per_batch=512,
                eval_num_rays_per_batch=512,
            ),
            model=_tiny_model(),
        ),
        _optimizers(2000),
        iterations=2000,
    ),
    description=(
        "CPU preset of nerfacto (small hash grid, 512 rays, no LPIPS download): "
        "the base model for relevance-nerf2nerf-tiny."
    ),
)

relevance_nerf2nerf = MethodSpecification(
    config=_editing("relevance-nerf2nerf", _full_model(), rays=4096, iterations=4000, cpu=False),
    description="GPU preset. Watch Your Steps: relevance-guided scene editing (InstructPix2Pix fp32).",
)

relevance_nerf2nerf_small = MethodSpecification(
    config=_editing(
        "relevance-nerf2nerf-small",
        _full_model(),
        rays=4096,
        iterations=4000,
        cpu=False,
        editor_precision="fp16",
        editor_memory_saving=True,
    ),
    description="GPU preset for 12 GB GPUs. Watch Your Steps scene editing, IP2P fp16 with memory savings.",
)

relevance_nerf2nerf_tiny = MethodSpecification(
    config=_editing("relevance-nerf2nerf-tiny", _tiny_model(), rays=512, iterations=300, cpu=True),
    description=(
        "CPU preset (not a low-memory GPU preset like in2n-tiny). Watch Your Steps scene editing "
        "at toy scale (small nerfacto, 512 rays, 300 iterations), for the demo and tests."
    ),
)

nerfacto_cpu = cpu_alias(nerfacto_tiny)
relevance_nerf2nerf_cpu = cpu_alias(relevance_nerf2nerf_tiny)
