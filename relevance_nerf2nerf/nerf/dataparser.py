"""nerfstudio's ``nerfstudio-data`` parser with its point cloud (``ply_file_path``), read without open3d.

Splatfacto starts its Gaussians from the capture's point cloud. nerfstudio reads that PLY with open3d, whose
import fails on machines without its system libraries (libusb); this parser reads the same files (ASCII or
binary little-endian, as ``ns-process-data`` and :mod:`relevance_nerf2nerf.scenes.points` write them) with
numpy and maps them into nerfstudio's frame as nerfstudio does (dataparser transform, then scale).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from nerfstudio.data.dataparsers.nerfstudio_dataparser import Nerfstudio, NerfstudioDataParserConfig

from relevance_nerf2nerf.scenes.points import read_ply


@dataclass
class PointCloudDataParserConfig(NerfstudioDataParserConfig):
    """``nerfstudio-data`` with the point cloud named by ``ply_file_path`` (splatfacto's seed points)."""

    _target: type = field(default_factory=lambda: PointCloudDataParser)
    load_3D_points: bool = True
    """Load the point cloud ``ply_file_path`` names (without one splatfacto starts from random points)."""


class PointCloudDataParser(Nerfstudio):
    """``Nerfstudio`` whose point cloud is read with numpy (see the module docstring)."""

    config: PointCloudDataParserConfig

    def _load_3D_points(self, ply_file_path: Path, transform_matrix: torch.Tensor, scale_factor: float):
        positions, colours = read_ply(ply_file_path)
        if len(positions) == 0:
            return None
        points = torch.from_numpy(positions)
        points = torch.cat([points, torch.ones_like(points[:, :1])], dim=-1) @ transform_matrix.T
        return {"points3D_xyz": points * scale_factor, "points3D_rgb": torch.from_numpy(colours)}
