"""A CPU reference rasterizer for 3D Gaussian splats, in plain torch (gsplat's rasterization is CUDA-only).

Projection, covariances and spherical harmonics are gsplat's own pure-torch reference functions
(``gsplat.cuda._torch_impl``: ``_quat_scale_to_covar_preci``, ``_fully_fused_projection``,
``_spherical_harmonics``), so a Gaussian lands where gsplat puts it. gsplat's torch tile intersection loops in
Python and its torch compositor calls CUDA ops, so the rest is done here, vectorised:

1. culling: only Gaussians with a positive screen radius (in front of the camera, overlapping the image);
2. footprints: every (Gaussian, pixel) pair inside the Gaussian's 3-sigma box, kept where the Gaussian's
   alpha at the pixel centre is at least 1/255 (gsplat's skip rule);
3. front-to-back compositing per pixel: pairs sorted by pixel, then depth, laid out as one padded row per
   pixel; transmittance is an exclusive cumulative product; a pixel stops before the Gaussian that would bring
   its transmittance to 1e-4 or below (gsplat's stop rule); alpha is capped at 0.999.

Cost grows with the number of pairs, not Gaussians x pixels. The returned ``info`` holds what gsplat's
``DefaultStrategy`` reads (``means2d`` with its gradient, ``radii``, ``width``, ``height``, ``n_cameras``,
``gaussian_ids``), so densification, splitting and pruning work on the CPU as on CUDA. Nothing here calls
``gsplat.cuda._wrapper``.
"""

from __future__ import annotations

from typing import Literal

import torch
from gsplat.cuda._torch_impl import (
    _fully_fused_projection,
    _quat_scale_to_covar_preci,
    _spherical_harmonics,
)
from torch import Tensor

ALPHA_MIN = 1.0 / 255.0
"""A Gaussian whose alpha at a pixel is below this is skipped there (gsplat's rule)."""
ALPHA_MAX = 0.999
"""Alpha of one Gaussian at one pixel is capped here (gsplat's rule)."""
TRANSMITTANCE_MIN = 1e-4
"""A pixel stops compositing before the Gaussian that would bring its transmittance to this or below."""

RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]


def sh_colors(means: Tensor, coeffs: Tensor, viewmats: Tensor, sh_degree: int) -> Tensor:
    """View-dependent colours of Gaussians from their spherical-harmonic coefficients, as gsplat has them.

    Args:
        means (Tensor): (N, 3) Gaussian centres in world space.
        coeffs (Tensor): (N, K, 3) SH coefficients, K >= (sh_degree + 1) ** 2.
        viewmats (Tensor): (C, 4, 4) world-to-camera matrices.
        sh_degree (int): the SH degree to evaluate (lower bands only).

    Returns:
        (C, N, 3) colours, ``max(sh + 0.5, 0)`` as gsplat's rasterization returns them.
    """
    campos = torch.inverse(viewmats)[:, :3, 3]  # (C, 3)
    dirs = means[None, :, :] - campos[:, None, :]
    shs = coeffs.expand(viewmats.shape[0], -1, -1, -1)
    return torch.clamp_min(_spherical_harmonics(sh_degree, dirs, shs) + 0.5, 0.0)


def _footprint_pairs(
    means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every (camera, Gaussian, pixel) in the visible Gaussians' square boxes, nearest Gaussians first.

    Returns camera ids, Gaussian ids, pixel x and pixel y of the pairs (all (M,) long, no gradient).
    """
    with torch.no_grad():
        cam, gauss = torch.where(radii > 0)
        order = torch.argsort(depths[cam, gauss], stable=True)
        cam, gauss = cam[order], gauss[order]
        centre = means2d[cam, gauss]
        radius = radii[cam, gauss].to(centre.dtype)
        x0 = torch.floor(centre[:, 0] - radius).clamp(0, width - 1).long()
        x1 = torch.ceil(centre[:, 0] + radius).clamp(0, width - 1).long()
        y0 = torch.floor(centre[:, 1] - radius).clamp(0, height - 1).long()
        y1 = torch.ceil(centre[:, 1] + radius).clamp(0, height - 1).long()
        box_w, box_h = x1 - x0 + 1, y1 - y0 + 1
        counts = box_w * box_h
        owner = torch.repeat_interleave(torch.arange(len(cam), device=cam.device), counts)
        offset = torch.arange(len(owner), device=cam.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        px = x0[owner] + offset % box_w[owner]
        py = y0[owner] + torch.div(offset, box_w[owner], rounding_mode="floor")
        return cam[owner], gauss[owner], px, py


def composite(
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    features: Tensor,
    radii: Tensor,
    depths: Tensor,
    width: int,
    height: int,
    detached_features: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Front-to-back alpha compositing of projected Gaussians (see the module docstring for the rules).

    Args:
        means2d (Tensor): (C, N, 2) projected centres in pixels (pixel (x, y) is centred at x + 0.5, y + 0.5).
        conics (Tensor): (C, N, 3) inverse 2D covariances (a, b, c): sigma = (a dx^2 + c dy^2) / 2 + b dx dy.
        opacities (Tensor): (C, N) opacities in [0, 1].
        features (Tensor): (C, N, D) what each Gaussian contributes (colours, depth...).
        radii (Tensor): (C, N) screen radii; 0 culls the Gaussian in that camera.
        depths (Tensor): (C, N) camera-space depths, which order the Gaussians front to back.
        width (int): image width in pixels.
        height (int): image height in pixels.
        detached_features (Tensor | None, default None): (C, N, E) features composited with DETACHED weights:
            their render trains them alone, never the geometry or opacities.

    Returns:
        renders (C, H, W, D), accumulated alphas (C, H, W, 1), and the detached features' renders
        (C, H, W, E) or None.
    """
    num_cameras = means2d.shape[0]
    num_pixels = num_cameras * height * width
    cam, gauss, px, py = _footprint_pairs(means2d, radii, depths, width, height)
    delta_x = px.to(means2d.dtype) + 0.5 - means2d[cam, gauss, 0]
    delta_y = py.to(means2d.dtype) + 0.5 - means2d[cam, gauss, 1]
    conic = conics[cam, gauss]
    sigma = 0.5 * (conic[:, 0] * delta_x**2 + conic[:, 2] * delta_y**2) + conic[:, 1] * delta_x * delta_y
    alpha = torch.clamp_max(opacities[cam, gauss] * torch.exp(-sigma), ALPHA_MAX)
    keep = ((sigma >= 0) & (alpha >= ALPHA_MIN)).detach()
    cam, gauss, alpha = cam[keep], gauss[keep], alpha[keep]
    pixel = (cam * height + py[keep]) * width + px[keep]
    # Pairs are in depth order; a stable sort by pixel keeps that order within each pixel.
    order = torch.sort(pixel, stable=True).indices
    cam, gauss, pixel, alpha = cam[order], gauss[order], pixel[order], alpha[order]
    per_pixel = torch.bincount(pixel, minlength=num_pixels)
    rank = torch.arange(len(pixel), device=pixel.device) - (torch.cumsum(per_pixel, 0) - per_pixel)[pixel]
    depth_max = int(per_pixel.max()) if len(pixel) else 0
    rows = alpha.new_zeros(num_pixels, depth_max + 1).index_put((pixel, rank), alpha)
    after = torch.cumprod(1.0 - rows, dim=1)  # transmittance after each Gaussian
    before = torch.cat([torch.ones_like(after[:, :1]), after[:, :-1]], dim=1)
    weight = (rows * before)[pixel, rank] * (after[pixel, rank] > TRANSMITTANCE_MIN).detach()

    def accumulate(values: Tensor, weights: Tensor) -> Tensor:
        out = values.new_zeros(num_pixels, values.shape[-1]).index_add(0, pixel, weights[:, None] * values)
        return out.reshape(num_cameras, height, width, values.shape[-1])

    renders = accumulate(features[cam, gauss], weight)
    alphas = accumulate(weight[:, None], torch.ones_like(weight))
    detached = None
    if detached_features is not None:
        detached = accumulate(detached_features[cam, gauss], weight.detach())
    return renders, alphas, detached


def rasterize_reference(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    sh_degree: int | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    render_mode: RenderMode = "RGB",
    rasterize_mode: Literal["classic", "antialiased"] = "classic",
    detached_colors: Tensor | None = None,
) -> tuple[Tensor, Tensor, dict]:
    """gsplat's ``rasterization`` (unpacked, pinhole cameras) in plain torch, for CPUs.

    Args:
        means (Tensor): (N, 3) Gaussian centres.
        quats (Tensor): (N, 4) rotations as wxyz quaternions (normalised here).
        scales (Tensor): (N, 3) scales (after the exponential).
        opacities (Tensor): (N,) opacities in [0, 1] (after the sigmoid).
        colors (Tensor): (N, D) features, or (N, K, 3) SH coefficients when ``sh_degree`` is set.
        viewmats (Tensor): (C, 4, 4) world-to-camera matrices (OpenCV axes, as gsplat takes them).
        Ks (Tensor): (C, 3, 3) intrinsics.
        width (int): image width.
        height (int): image height.
        sh_degree (int | None, default None): evaluate ``colors`` as SH of this degree; None: plain features.
        near_plane (float, default 0.01): Gaussians nearer than this are culled.
        far_plane (float, default 1e10): Gaussians farther than this are culled.
        eps2d (float, default 0.3): screen-space blur added to every 2D covariance (gsplat's default).
        render_mode (str, default "RGB"): "RGB", "D" (accumulated depth), "ED" (expected depth), "RGB+D",
            "RGB+ED", as in gsplat.
        rasterize_mode (str, default "classic"): "antialiased" scales opacities by gsplat's compensation.
        detached_colors (Tensor | None, default None): (N, E) features composited with detached weights; their
            render is ``info["detached_render"]`` (C, H, W, E): its loss reaches these features only.

    Returns:
        render (C, H, W, X), alphas (C, H, W, 1) and ``info`` (gsplat's meta entries that its strategies read:
        ``means2d`` (C, N, 2) in the graph, ``radii``, ``depths``, ``conics``, ``opacities``, ``width``,
        ``height``, ``n_cameras``, ``camera_ids``/``gaussian_ids`` None as in gsplat's unpacked mode).
    """
    num_cameras = viewmats.shape[0]
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=False)
    radii, means2d, depths, conics, compensations = _fully_fused_projection(
        means, covars, viewmats, Ks, width, height, eps2d=eps2d, near_plane=near_plane,
        far_plane=far_plane, calc_compensations=rasterize_mode == "antialiased",
    )  # fmt: skip
    opacities = opacities[None, :].expand(num_cameras, -1)
    if compensations is not None:
        opacities = opacities * compensations
    if sh_degree is None:
        features = colors[None].expand(num_cameras, -1, -1)
    else:
        features = sh_colors(means, colors, viewmats, sh_degree)
    if render_mode in ("D", "ED"):
        features = depths[..., None]
    elif render_mode in ("RGB+D", "RGB+ED"):
        features = torch.cat([features, depths[..., None]], dim=-1)
    detached = None if detached_colors is None else detached_colors[None].expand(num_cameras, -1, -1)
    render, alphas, detached_render = composite(
        means2d, conics, opacities, features, radii, depths, width, height, detached_features=detached
    )
    if render_mode in ("ED", "RGB+ED"):
        render = torch.cat([render[..., :-1], render[..., -1:] / alphas.clamp(min=1e-10)], dim=-1)
    info = {
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": radii,
        "means2d": means2d,
        "depths": depths,
        "conics": conics,
        "opacities": opacities,
        "width": width,
        "height": height,
        "n_cameras": num_cameras,
        "detached_render": detached_render,
    }
    return render, alphas, info
