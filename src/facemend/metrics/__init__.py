"""Evaluation metrics: PSNR/SSIM, fine detail, LPIPS, FID/KID (+ FD in face-embedding space),
iPrecision/iRecall.

Modules import torch but no weights at import time; weights are loaded by explicit `load_*` calls.
"""

from facemend.metrics.detail import fine_detail_energy, fine_detail_ratio
from facemend.metrics.fid import fid_from_features, frechet_distance, kid, load_inception
from facemend.metrics.identity import ipr_curve, iprecision_irecall, ipred, knn_radii
from facemend.metrics.lpips import LPIPS, load_lpips
from facemend.metrics.psnr_ssim import psnr, ssim

__all__ = [
    "LPIPS",
    "fine_detail_energy",
    "fine_detail_ratio",
    "fid_from_features",
    "frechet_distance",
    "ipr_curve",
    "iprecision_irecall",
    "ipred",
    "kid",
    "knn_radii",
    "load_inception",
    "load_lpips",
    "psnr",
    "ssim",
]
