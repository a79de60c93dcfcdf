"""The Python API: `FaceRestorer(...).enhance(img)`, as GFPGAN's `GFPGANer` is for scripts.

    from facemend import FaceRestorer
    restorer = FaceRestorer()                      # the bundled weights, loaded once
    result = restorer.enhance(rgb)                 # (H, W, 3) uint8 RGB numpy array
    result.image, result.restored_faces            # the photo and each face at its own size
    result = restorer.restore_file("old.jpg", upscale=2)

`facemend restore` and `facemend serve` go through this class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from facemend.inference.detect import DetectOptions
from facemend.inference.restore import (
    MAX_FACE_SIZE,
    FaceResult,
    PhotoResult,
    memory_safe_batch,
    model_restorer,
    restore_photo,
)

Backend = Literal["torch", "onnx"]
MAX_UPSCALE = 16.0  # a 12 MP photo at 16x: 3 GP of output, ~46 GB of float canvases
MAX_SAMPLES = 64
CANVAS_BYTES = 3 * 4 + 3  # per output pixel and sample: the float32 canvas and its uint8 copy


def output_bytes(height: int, width: int, upscale: float, samples: int) -> int:
    """Estimated memory of a photo's output: per sample a float32 RGB canvas and its uint8
    image, plus one float32 temporary of the upscaled background."""
    pixels = round(height * upscale) * round(width * upscale)
    return pixels * (CANVAS_BYTES * samples + 3 * 4)


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable on Linux; else all physical memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import os

    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_bounds(upscale: float, samples: int) -> None:
    """ValueError unless 0 < upscale <= MAX_UPSCALE and 1 <= samples <= MAX_SAMPLES; the message
    says what a one-megapixel photo would need."""
    if not np.isfinite(upscale):
        raise ValueError(f"upscale {upscale}: must be a finite number in (0, {MAX_UPSCALE:g}]")
    need = output_bytes(1000, 1000, min(upscale, 1e4), min(samples, 10**6)) / 1e9
    if not 0 < upscale <= MAX_UPSCALE:
        raise ValueError(f"upscale {upscale:g}: must be in (0, {MAX_UPSCALE:g}] (a 1 MP photo "
                         f"would need {need:,.0f} GB of output canvases)")
    if not 1 <= samples <= MAX_SAMPLES:
        raise ValueError(f"samples {samples}: must be in [1, {MAX_SAMPLES}] (a 1 MP photo at "
                         f"upscale {upscale:g} would need {need:,.1f} GB of output canvases)")


@dataclass
class Restoration:
    """What `enhance` returns: the restored photo (per sample) and every face's crops."""

    image: np.ndarray  # (H', W', 3) uint8 RGB: the photo (upscaled) or, aligned, the face
    images: list[np.ndarray]  # one per sample; images[0] is image
    faces: list[FaceResult]  # per face: box, landmarks, identity, guard, trust, crops
    timings: dict[str, float] = field(default_factory=dict)
    face_size: int | None = None  # the fixed side asked for restored/cropped faces, if any

    @property
    def cropped_faces(self) -> list[np.ndarray]:
        """Each face's aligned input crop (at its own size, or face_size)."""
        return [resize_face(f.cropped, self.face_size) for f in self.faces]

    @property
    def restored_faces(self) -> list[np.ndarray]:
        """Each face restored (first sample), at its own size (or face_size)."""
        return [resize_face(f.restored[0], self.face_size) for f in self.faces if f.restored]


def resize_face(img: np.ndarray, size: int | None) -> np.ndarray:
    """An (S, S, 3) uint8 face at size x size (area down, Lanczos up); as is for None."""
    if size is None or img.shape[:2] == (size, size):
        return img
    from facemend.inference.detail import resize_uint8

    return resize_uint8(img, size)


class FaceRestorer:
    """Loads a model once (torch weights folder or ONNX file) and restores images with it.

    weights: a weights folder (default: the bundled model); backend "onnx" with `onnx` the
    file from `facemend export --onnx`. noise_scale: 0 = deterministic, 1 = the trained noise
    (default: 1 for torch, what the graph allows for ONNX); seed makes samples repeatable.
    identity: compute the input/output identity similarity of each face (dlib ResNet);
    identity_guard T blends back toward the input where it falls below T. detail: keep each
    face at its own size with the input's detail above the model's band (False: the model's
    output replaces the face, at the model's resolution). `model`: a Generator already in
    memory, instead of `weights`.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        model: torch.nn.Module | None = None,
        backend: Backend = "torch",
        onnx: str | Path | None = None,
        device: str = "auto",
        noise_scale: float | None = None,
        seed: int = 0,
        identity: bool = True,
        identity_guard: float | None = None,
        detector: str = "hog",
        smallest_face: float = 1 / 20,
        colour_match: bool = True,
        detail: bool = True,
        face_shaped_mask: bool = True,
        batch_size: int = 4,
    ) -> None:
        if identity_guard is not None and not identity:
            raise ValueError("identity_guard needs the identity similarity (identity=True)")
        if noise_scale is not None and not np.isfinite(noise_scale):
            raise ValueError(f"noise_scale={noise_scale}: must be a finite number")
        if not 0 <= smallest_face < 1:
            raise ValueError(f"smallest_face={smallest_face}: must be in [0, 1) (a fraction of "
                             "the photo's longer side; 0 = every face the detector can find)")
        self.settings = {"detector": detector, "smallest_face": smallest_face,
                         "colour_match": colour_match, "detail": detail,
                         "face_shaped_mask": face_shaped_mask, "identity_guard": identity_guard}
        if backend == "onnx":
            from facemend.inference.onnx_backend import OnnxBackendError, onnx_restorer

            if not onnx:
                raise ValueError("backend 'onnx' needs an ONNX file (see `facemend export`)")
            try:
                self.model, self.size = onnx_restorer(onnx, noise_scale, seed)
            except OnnxBackendError as e:
                raise ValueError(str(e)) from None
            self.noise_scale = float(self.model.noise_scale)
            self.info: dict[str, Any] = {"backend": "onnx", "file": str(onnx)}
        else:
            from facemend.models.pretrained import find_default_weights, from_pretrained
            from facemend.training.distributed import pick_device

            dev = pick_device(device)
            source = "<in memory>"
            if model is None:
                folder = Path(weights) if weights is not None else find_default_weights()
                model, source = from_pretrained(folder, device=dev), str(folder)
            self.G, self.device = model.eval(), dev
            self.noise_scale = 1.0 if noise_scale is None else float(noise_scale)
            self.model = model_restorer(model, noise_scale=self.noise_scale, seed=seed, device=dev)
            self.size = int(model.cfg.resolution)
            self.info = {"backend": "torch", "weights": source, "resolution": self.size,
                         "device": str(dev)}
        self.batch_size = memory_safe_batch(self.size, batch_size)
        self.identity_fn = _identity_fn() if identity else None

    def enhance(
        self,
        img: np.ndarray,
        *,
        aligned: bool = False,
        only_center_face: bool = False,
        face_index: int | None = None,
        upscale: float = 1.0,
        samples: int = 1,
        face_size: int | None = None,
        upsample: int | None = None,
        noise_scale: float | None = None,
        seed: int | None = None,
    ) -> Restoration:
        """Restore an (H, W, 3) uint8 RGB image: a photo, or one aligned face (`aligned`).

        upscale scales the whole photo (background by Lanczos); face_size fixes the side of
        the returned face crops (default: each face at its own size in the output, at least
        the model's); upsample is the detector's (default: 2 below 800 px, else 1).
        noise_scale / seed (torch backend) restore this image with their own noise instead of
        continuing the restorer's seeded stream.
        """
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {img.dtype} "
                             f"{tuple(img.shape)}")
        check_bounds(upscale, samples)
        if not aligned:
            h, w = img.shape[:2]
            need, free = output_bytes(h, w, upscale, samples), available_memory()
            if need > free:
                raise ValueError(f"upscale {upscale:g} x {samples} sample(s) of this {w}x{h} "
                                 f"photo would need {need / 1e9:.1f} GB for the output, more "
                                 f"than the {free / 1e9:.1f} GB available; lower the upscale "
                                 "or the samples")
        if upsample is None:  # small photos have small faces: let the detector look closer
            upsample = 2 if max(img.shape[:2]) < 800 else 1
        call = self.model
        if noise_scale is not None or seed is not None:
            if not hasattr(self, "G"):
                raise ValueError("noise_scale / seed per image need the torch backend")
            scale = self.noise_scale if noise_scale is None else float(noise_scale)
            if not np.isfinite(scale):
                raise ValueError(f"noise_scale={noise_scale}: must be a finite number")
            call = model_restorer(self.G, noise_scale=scale, seed=seed or 0, device=self.device)
        res: PhotoResult = restore_photo(
            img, _finite_output(call), self.size,
            detect=DetectOptions(detector=self.settings["detector"], upsample=upsample,
                                 smallest_face=self.settings["smallest_face"]),
            only_center_face=only_center_face, face_index=face_index, upscale=upscale,
            aligned=aligned, batch_size=self.batch_size, samples=samples,
            identity_fn=self.identity_fn, identity_guard=self.settings["identity_guard"],
            colour_match=self.settings["colour_match"], detail=self.settings["detail"],
            face_shaped_mask=self.settings["face_shaped_mask"],
            max_face_size=max(MAX_FACE_SIZE, face_size or 0),
        )
        return Restoration(res.images[0], res.images, res.faces, res.timings, face_size)

    def restore_file(self, path: str | Path, **options: Any) -> Restoration:
        """`enhance` on an image file (any format `facemend restore` reads, EXIF-rotated)."""
        from facemend.io import load_image

        return self.enhance(load_image(path).rgb, **options)


def _finite_output(restorer: Any) -> Any:
    """`restorer` refusing (ValueError) a model output that holds NaN or infinite values."""

    def restore(x: torch.Tensor) -> torch.Tensor:
        y = restorer(x)
        if not bool(torch.isfinite(y).all()):
            raise ValueError("the model's output holds NaN or infinite values (weights or "
                             "noise not finite)")
        return y

    return restore


def _identity_fn():
    """(B, 3, S, S) [-1, 1] aligned faces -> (B, 128) dlib ResNet embeddings."""
    from facemend.faces.chip import embed_aligned

    def identity(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return embed_aligned(x)

    return identity
