"""splatfacto with a per-Gaussian relevance (the 3D Gaussian counterpart of paper section 4.3).

Every Gaussian carries one relevance logit in splatfacto's Gaussian parameter dict (key ``relevance``, its own
optimizer group of the same name), so gsplat's ``DefaultStrategy`` duplicates, splits and prunes it with the
rest of each Gaussian. The relevance is rendered as ``sum_i w_i sigmoid(r_i)`` with the colour render's
compositing weights DETACHED: the masked relevance loss trains the logits only, never means, scales,
quaternions, opacities, colours or camera poses.

Rendering: on CUDA, gsplat's rasterization, and the relevance a second rasterization of the same
Gaussians with detached geometry; elsewhere the pure-torch reference renderer of :mod:`.splat_rasterizer`,
which composites the relevance with the colour pass's detached weights. What splatfacto does not allow on a
CPU is handled here: intrinsics moved with ``.cuda()``, seed colours built on CUDA, LPIPS downloaded at
construction, absolute gradients (only gsplat's CUDA backward computes them; the reference renderer
densifies on plain gradients).

An edit starts from a trained splatfacto: the model keeps the base's step in ``base_step`` and shows
splatfacto (resolution schedule, SH degree, densification and opacity resets) the base's step plus the
edit's, while the edit's own counter starts at 0.
"""

from __future__ import annotations

import dataclasses
import math
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.models.splatfacto import RGB2SH, SplatfactoModel, SplatfactoModelConfig, get_viewmat
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor
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
from relevance_nerf2nerf.nerf.splat_rasterizer import rasterize_reference

GAUSSIAN_KEYS = ("means", "scales", "quats", "features_dc", "features_rest", "opacities")
"""splatfacto's own Gaussian parameters."""
BASE_STEP_KEY = "base_step"
"""Model buffer: the step of the splatfacto run an edit started from (0 for a run trained from scratch)."""


@dataclass
class RelevanceSplatfactoModelConfig(SplatfactoModelConfig):
    """splatfacto plus one relevance logit per Gaussian; everything splatfacto has stays as it is."""

    _target: type = field(default_factory=lambda: RelevanceSplatfactoModel)
    relevance_loss_mult: float = 1.0
    """Weight of the masked MSE between rendered relevance and the view's stored 2D relevance."""
    relevance_init: float = 0.02
    """Relevance (after the sigmoid) of Gaussians that have none yet (fresh, or loaded from a plain
    splatfacto): well below any useful tau, so a Gaussian no view has shown to be relevant is not."""
    renderer: Literal["auto", "gsplat", "reference"] = "auto"
    """Rasterizer: gsplat (CUDA only), the pure-torch reference (any device), or auto (gsplat on CUDA)."""
    use_lpips: bool = True
    """Build torchmetrics' LPIPS for eval metrics (downloads AlexNet once; skipped with a warning offline)."""
    freeze_below: float = 0.0
    """Freeze the Gaussians whose relevance is below this while training (the 3D counterpart of the 2D
    mask; e.g. the edit's tau, 0.5): no gradient reaches their parameters and gsplat does not densify them.
    0: off."""


def _uncompiled_viewmat(camera_to_world: Tensor) -> Tensor:
    """splatfacto's world-to-camera matrix; its ``torch.compile`` wrapper is skipped off CUDA, where compiling
    needs a C++ toolchain and costs more than it saves for one 4x4 matrix."""
    if camera_to_world.is_cuda:
        return get_viewmat(camera_to_world)
    return getattr(get_viewmat, "_torchdynamo_orig_callable", get_viewmat)(camera_to_world)


class RelevanceSplatfactoModel(RelevanceModelMixin, SplatfactoModel):
    """splatfacto whose Gaussians also carry relevance; output ``relevance`` (H, W, 1) in train and eval."""

    config: RelevanceSplatfactoModelConfig

    def populate_modules(self):
        points = self.seed_points
        colours = None
        if points is not None and not self.config.random_init and points[1].shape[0] > 0:
            # splatfacto builds seed colours with .cuda(): give it the points alone, set the colours below.
            colours = points[1].float() / 255.0
            self.seed_points = (points[0], points[1][:0])
        with without_lpips_download():
            super().populate_modules()
        self.seed_points = points
        if colours is not None:
            dc = RGB2SH(colours) if self.config.sh_degree > 0 else torch.logit(colours, eps=1e-10)
            self.gauss_params["features_dc"] = Parameter(dc)
        self.gauss_params[RELEVANCE_PARAM_GROUP] = Parameter(self._fresh_relevance(self.num_points))
        self.lpips = build_lpips(self.config.use_lpips)
        self.register_buffer(BASE_STEP_KEY, torch.zeros((), dtype=torch.long))
        self.frozen: Tensor | None = None  # the Gaussians frozen in the current training iteration

    def _fresh_relevance(self, count: int) -> Tensor:
        """Logits of ``count`` Gaussians without a relevance yet: ``relevance_init`` after the sigmoid."""
        return torch.full((count, 1), float(torch.logit(torch.tensor(self.config.relevance_init))))

    @property
    def relevance_logits(self) -> Parameter:
        """(N, 1) relevance logit of every Gaussian."""
        return self.gauss_params[RELEVANCE_PARAM_GROUP]

    # --- parameters and optimizers -------------------------------------------------------------------
    def get_gaussian_param_groups(self) -> dict[str, list[Parameter]]:
        """splatfacto's groups plus ``relevance``: gsplat's strategy looks an optimizer up for every key of
        the Gaussian parameter dict, so each key has a group (and optimizer) of its own name."""
        groups = super().get_gaussian_param_groups()
        groups[RELEVANCE_PARAM_GROUP] = [self.relevance_logits]
        return groups

    def bind_optimizers(self, optimizers: Optimizers) -> None:
        """Point each Gaussian optimizer at the model's current parameter tensor.

        splatfacto's ``load_state_dict`` replaces every Gaussian parameter with a new one (the count changes),
        so optimizers built before a load (nerfstudio builds them before loading ``--load-dir`` or a base)
        would update orphaned tensors. Optimizer state (e.g. Adam's moments restored from a checkpoint) moves
        to the new tensor when its shape matches, else it starts afresh.

        Args:
            optimizers (Optimizers): the trainer's optimizers.
        """
        for name, (param,) in self.get_gaussian_param_groups().items():
            optimizer = optimizers.optimizers.get(name)
            if optimizer is None:
                continue
            group = optimizer.param_groups[0]
            old = group["params"][0]
            if old is param:
                continue
            state = optimizer.state.pop(old, {})
            fits = all(
                not torch.is_tensor(v) or v.dim() == 0 or v.shape == param.shape for v in state.values()
            )
            if state and fits:
                optimizer.state[param] = {
                    k: v.to(param.device) if torch.is_tensor(v) else v for k, v in state.items()
                }
            group["params"] = [param]
            optimizers.parameters[name] = [param]

    def load_state_dict(self, dict: dict[str, Any], **kwargs):  # type: ignore[override]
        """splatfacto's loading (resizes the Gaussians to the checkpoint's count), plus: the SH degree is the
        checkpoint's (a base trained with another ``sh_degree`` loads as it was trained), a checkpoint
        without relevance (a plain splatfacto run) gets ``relevance_init`` for every Gaussian, one without
        ``base_step`` keeps 0, and gsplat's running densification statistics restart for the new count."""
        if "means" in dict and "gauss_params.means" not in dict:  # splatfacto's oldest checkpoint layout
            dict = {**dict, **{f"gauss_params.{k}": dict[k] for k in GAUSSIAN_KEYS if k in dict}}
        count = dict["gauss_params.means"].shape[0]
        dict.setdefault(f"gauss_params.{RELEVANCE_PARAM_GROUP}", self._fresh_relevance(count))
        dict.setdefault(BASE_STEP_KEY, torch.zeros((), dtype=torch.long))
        rest = dict.get("gauss_params.features_rest")
        if rest is not None and rest.shape[1:] != self.features_rest.shape[1:]:
            degree = round(math.sqrt(rest.shape[1] + 1)) - 1
            CONSOLE.print(
                f"SH degree {degree} from the checkpoint (the config asked for {self.config.sh_degree})"
            )
            self.config.sh_degree = degree
            self.gauss_params["features_rest"] = Parameter(torch.zeros(1, *rest.shape[1:]))
        # splatfacto's own override resizes the Gaussians but returns no missing/unexpected keys: resize here
        self.step = 30000  # as splatfacto: a loaded model renders with every SH band (training sets the step)
        for name, param in self.gauss_params.items():
            self.gauss_params[name] = Parameter(torch.zeros((count, *param.shape[1:]), device=self.device))
        result = super(SplatfactoModel, self).load_state_dict(dict, **kwargs)
        for name, value in self.strategy_state.items():
            if torch.is_tensor(value):
                self.strategy_state[name] = None
        return result

    def start_from_base(self, base_step: int) -> None:
        """Record that an edit starts from a splatfacto run saved at ``base_step``: splatfacto's schedules
        continue from the base's next step while the edit counts its own iterations from 0.

        Args:
            base_step (int): the ``step`` of the base checkpoint.
        """
        self.base_step.fill_(base_step + 1)

    def reset_relevance(self) -> None:
        """Every Gaussian back to ``relevance_init``: a new instruction keeps nothing of the old relevance."""
        with torch.no_grad():
            self.relevance_logits.copy_(self._fresh_relevance(self.num_points))

    # --- the step splatfacto sees ----------------------------------------------------------------------
    def step_cb(self, optimizers: Optimizers, step: int) -> None:
        self.bind_optimizers(optimizers)
        super().step_cb(optimizers, step + int(self.base_step))

    def _frozen_gaussians(self) -> Tensor | None:
        """(N,) bool, the Gaussians frozen in this training iteration (relevance below ``freeze_below``), or
        None when nothing is frozen (off, or not training)."""
        if not self.training or self.config.freeze_below <= 0.0:
            return None
        return (torch.sigmoid(self.relevance_logits.detach()) < self.config.freeze_below).squeeze(-1)

    @staticmethod
    def _freeze(name: str, value: Tensor, frozen: Tensor) -> Tensor:
        """``value`` with the frozen Gaussians' rows detached (no gradient); relevance stays trainable."""
        if name == RELEVANCE_PARAM_GROUP:
            return value
        return torch.where(frozen.view(-1, *[1] * (value.dim() - 1)), value.detach(), value)

    def step_post_backward(self, step: int) -> None:
        """gsplat's densification at the step splatfacto sees. The first iteration of an edit only gathers
        gradient statistics: no densification on one view's gradients and no opacity reset (the base's
        schedule may put one there: it would wipe the base's opacities)."""
        seen = step + int(self.base_step)
        strategy = self.strategy
        if step == 0 and int(self.base_step) > 0:
            strategy = dataclasses.replace(strategy, refine_every=seen + 1, reset_every=seen + 1)
        frozen = self.frozen
        if frozen is not None:  # frozen Gaussians gather no densification statistics
            for grad in (self.info["means2d"].grad, getattr(self.info["means2d"], "absgrad", None)):
                if grad is not None and len(frozen) == grad.shape[1]:
                    grad[:, frozen] = 0.0
        strategy.step_post_backward(
            params=self.gauss_params, optimizers=self.optimizers, state=self.strategy_state, step=seen,
            info=self.info, packed=False,
        )  # fmt: skip

    @torch.no_grad()
    def render_for_edit(self, camera: Cameras, index: int) -> tuple[Tensor, Tensor]:
        """The render an update edits: eval mode (fixed background, full resolution) at training view
        ``index``'s camera with its pose correction applied.

        Args:
            camera (Cameras): the view's camera (one).
            index (int): the view's dataset index (selects its pose correction).

        Returns:
            rgb (1, 3, H, W) and relevance (1, 1, H, W), both in [0, 1].
        """
        camera = camera.to(self.device)
        camera.metadata = {**(camera.metadata or {}), "cam_idx": index}
        corrected = deepcopy(camera)
        corrected.camera_to_worlds = self.camera_optimizer.apply_to_camera(camera)
        was_training = self.training
        self.eval()
        try:
            outputs = self.get_outputs(corrected)
        finally:
            self.train(was_training)
        rgb = outputs["rgb"].clamp(0.0, 1.0).permute(2, 0, 1)[None]
        return rgb, outputs[RELEVANCE].permute(2, 0, 1)[None]

    # --- rendering -----------------------------------------------------------------------------------
    def _use_gsplat(self) -> bool:
        if self.config.renderer == "auto":
            return self.means.is_cuda
        return self.config.renderer == "gsplat"

    def _rasterize(
        self, params: dict[str, Tensor], colors: Tensor, viewmat: Tensor, K: Tensor, width: int, height: int,
        render_mode: str, sh_degree: int | None,
    ) -> tuple[Tensor, Tensor, Tensor, dict]:  # fmt: skip
        """Colour (+ depth) render, alpha, relevance render (C, H, W, 1) and gsplat's ``info``."""
        means, quats = params["means"], params["quats"]
        scales, opacities = torch.exp(params["scales"]), torch.sigmoid(params["opacities"]).squeeze(-1)
        relevance = torch.sigmoid(params[RELEVANCE_PARAM_GROUP])
        common = dict(
            width=width,
            height=height,
            near_plane=0.01,
            far_plane=1e10,
            rasterize_mode=self.config.rasterize_mode,
        )
        if not self._use_gsplat():
            if self.training and self.strategy.absgrad:
                CONSOLE.print("[yellow]The reference renderer has no absolute gradients: densifying on plain")
                self.strategy.absgrad = False
            render, alpha, info = rasterize_reference(
                means, quats, scales, opacities, colors, viewmat, K, render_mode=render_mode,  # type: ignore[arg-type]
                sh_degree=sh_degree, detached_colors=relevance, **common,
            )  # fmt: skip
            return render, alpha, info.pop("detached_render"), info
        from gsplat.rendering import rasterization

        render, alpha, info = rasterization(
            means=means, quats=quats, scales=scales, opacities=opacities, colors=colors, viewmats=viewmat,
            Ks=K, packed=False, render_mode=render_mode, sh_degree=sh_degree, sparse_grad=False,
            absgrad=self.strategy.absgrad, **common,
        )  # fmt: skip
        # The same Gaussians with detached geometry: the relevance loss trains the logits only.
        relevance_render, _, _ = rasterization(
            means=means.detach(), quats=quats.detach(), scales=scales.detach(), opacities=opacities.detach(),
            colors=relevance, viewmats=viewmat.detach(), Ks=K, packed=False, render_mode="RGB", **common,
        )  # fmt: skip
        return render, alpha, relevance_render, info

    def get_outputs(self, camera: Cameras) -> dict[str, Tensor | list]:
        """splatfacto's outputs (rgb, depth, accumulation, background) plus ``relevance`` (H, W, 1) in [0, 1].

        Args:
            camera (Cameras): one camera (training: the view's camera, its pose correction applied).
        """
        if not isinstance(camera, Cameras):
            return {}
        if self.training:
            assert camera.shape[0] == 1, "Only one camera at a time"
            camera_to_world = self.camera_optimizer.apply_to_camera(camera)
        else:
            camera_to_world = camera.camera_to_worlds
        params: dict[str, Tensor] = dict(self.gauss_params.items())
        if self.crop_box is not None and not self.training:
            inside = self.crop_box.within(self.means).squeeze()
            if inside.sum() == 0:
                outputs = self.get_empty_outputs(
                    int(camera.width.item()), int(camera.height.item()), self.background_color
                )
                outputs[RELEVANCE] = torch.zeros_like(outputs["accumulation"])
                return outputs
            params = {name: value[inside] for name, value in params.items()}
        self.frozen = self._frozen_gaussians()
        if self.frozen is not None:
            params = {name: self._freeze(name, value, self.frozen) for name, value in params.items()}
        colors = torch.cat((params["features_dc"][:, None, :], params["features_rest"]), dim=1)
        scale = self._get_downscale_factor()
        camera.rescale_output_resolution(1 / scale)
        viewmat = _uncompiled_viewmat(camera_to_world)
        K = camera.get_intrinsics_matrices().to(self.device)
        W, H = int(camera.width.item()), int(camera.height.item())
        self.last_size = (H, W)
        camera.rescale_output_resolution(scale)  # type: ignore[arg-type]
        render_mode = "RGB+ED" if self.config.output_depth_during_training or not self.training else "RGB"
        if self.config.sh_degree > 0:
            sh_degree: int | None = min(self.step // self.config.sh_degree_interval, self.config.sh_degree)
        else:
            colors = torch.sigmoid(colors).squeeze(1)
            sh_degree = None
        render, alpha, relevance, self.info = self._rasterize(
            params, colors, viewmat, K, W, H, render_mode, sh_degree
        )
        if self.training:
            self.strategy.step_pre_backward(
                self.gauss_params, self.optimizers, self.strategy_state, self.step, self.info
            )
        background = self._get_background_color()
        rgb = torch.clamp(render[..., :3] + (1 - alpha) * background, 0.0, 1.0)
        if self.config.use_bilateral_grid and self.training:
            if camera.metadata is not None and "cam_idx" in camera.metadata:
                rgb = self._apply_bilateral_grid(rgb, camera.metadata["cam_idx"], H, W)
        depth = None
        if render_mode == "RGB+ED":
            depth = torch.where(alpha > 0, render[..., 3:4], render[..., 3:4].detach().max()).squeeze(0)
        if background.shape[0] == 3 and not self.training:
            background = background.expand(H, W, 3)
        return {
            "rgb": rgb.squeeze(0),
            "depth": depth,  # type: ignore[dict-item]
            "accumulation": alpha.squeeze(0),
            "background": background,
            RELEVANCE: relevance.squeeze(0).clamp(0.0, 1.0),
        }

    # --- losses and metrics --------------------------------------------------------------------------
    def relevance_loss(self, outputs: dict, batch: dict) -> Tensor | None:
        """Masked MSE against the view's stored relevance (at the render's resolution), or None without
        relevance data in the batch.

        Args:
            outputs (dict): the model's outputs for the batch's camera (``relevance`` (H, W, 1)).
            batch (dict): the view's batch (``RELEVANCE_TARGET`` (H, W, 1), ``RELEVANCE_VALID``).
        """
        if RELEVANCE_TARGET not in batch:
            return None
        target = self._downscale_if_required(batch[RELEVANCE_TARGET].to(self.device).float())
        valid = batch[RELEVANCE_VALID].to(self.device).float()
        valid = self._downscale_if_required(valid.expand_as(batch[RELEVANCE_TARGET])) > 0.5
        return self.config.relevance_loss_mult * masked_mse(outputs[RELEVANCE], target, valid)
