"""Whole-photo restoration (DESIGN §4): detect -> align -> restore -> guard -> colour -> paste.

The model is any `Restorer`: a callable taking (B, 3, S, S) float in [-1, 1] and returning the
same shape, plus its resolution S. So the pipeline runs (and is tested) with an identity
restorer; `model_restorer` wraps the trained Generator, called as G(x, noise_scale, generator).
Identity similarity is the cosine similarity of `identity_fn` embeddings ((B, 3, S, S) in
[-1, 1] -> (B, D)) of the input crop and the restored crop. With `identity_guard=T`, a sample
whose similarity is below T is blended half-way back toward the input crop; if still below T,
the input crop is kept. Either action is recorded per face and sample.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from facemend.inference.align import affine_scale, align_face
from facemend.inference.detect import DetectOptions, Face, detect_faces, select_faces
from facemend.inference.paste import (
    Upsampler,
    canvas_to_uint8,
    face_mask,
    match_colour,
    output_matrix,
    paste_face,
    upscale_image,
)
from facemend.io import to_tensor, to_uint8

Restorer = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, S, S) [-1, 1] -> (B, 3, S, S)
IdentityFn = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, S, S) [-1, 1] -> (B, D)
GuardAction = Literal["none", "blended", "kept input"]


@dataclass
class FaceResult:
    """One face of a photo: where it was, its crops, and per sample its identity and guard."""

    index: int  # rank among detected faces, largest first
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1) in the photo
    landmarks5: np.ndarray  # (5, 2) in the photo
    matrix: np.ndarray  # (2, 3) photo -> crop similarity
    source_size: float  # side of the crop in photo pixels (size / scale of matrix)
    cropped: np.ndarray  # (S, S, 3) uint8 aligned input crop
    restored: list[np.ndarray] = field(default_factory=list)  # per sample (S, S, 3) uint8, pasted
    identity: list[float | None] = field(default_factory=list)  # per sample, model output vs input
    identity_final: list[float | None] = field(default_factory=list)  # after the guard
    guard: list[GuardAction] = field(default_factory=list)  # per sample


@dataclass
class PhotoResult:
    """Restored photo per sample, every face's crops and info, and stage timings (seconds)."""

    faces: list[FaceResult]
    images: list[np.ndarray]  # per sample (H*up, W*up, 3) uint8; the restored face when aligned
    timings: dict[str, float] = field(default_factory=dict)


def model_restorer(
    model: Any, noise_scale: float = 1.0, seed: int = 0, device: str | torch.device = "cpu",
    *, channels_last: bool | None = None, bf16: bool = False,
) -> Restorer:
    """Restorer calling model(x, noise_scale=s, generator=g) under inference_mode, one seeded g.

    Successive calls (batches, samples) draw fresh noise from the same generator, so a run is
    reproducible for a given seed, face order and batch size. `channels_last` (default: on for a
    facemend Generator, where it measured 1.05-1.3x faster on CPU; results equal within 1e-4)
    feeds NHWC tensors; GFPGAN/CodeFormer-style models need it off. `bf16` runs under bf16
    autocast (faster on AMX/GPU, results differ by ~1e-2; off by default).
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    if channels_last is None:
        from facemend.models.generator import Generator

        channels_last = isinstance(model, Generator)
    device_type = torch.device(device).type
    if channels_last:  # weights too, or every conv reorders its weights on each call
        model.to(memory_format=torch.channels_last)

    def restore(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        amp = (torch.autocast(device_type, dtype=torch.bfloat16) if bf16
               else contextlib.nullcontext())
        with torch.inference_mode(), amp:
            y = model(x, noise_scale=noise_scale, generator=gen)
        return y.float().contiguous()

    return restore


def memory_safe_batch(size: int, requested: int, pixel_budget: int = 4 * 512 * 512) -> int:
    """Largest batch <= requested with batch * size^2 <= pixel_budget (peak-memory cap).

    The paper-size model (512 px) needs ~0.45 GB of activations per face in a batch (measured
    by `facemend bench`), so the default budget, 4 faces at 512 px, keeps a 6000x4000 photo
    under ~3.1 GB peak; 64 px faces are capped at 256 per batch.
    """
    return max(1, min(requested, pixel_budget // (size * size)))


def identity_similarity(identity_fn: IdentityFn, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) cosine similarity of the embeddings of two (B, 3, S, S) batches in [-1, 1]."""
    ea, eb = identity_fn(a).float(), identity_fn(b).float()  # (B, D)
    return torch.nn.functional.cosine_similarity(ea, eb, dim=1).cpu()


def apply_identity_guard(
    identity_fn: IdentityFn,
    inputs: torch.Tensor,
    restored: torch.Tensor,
    threshold: float,
    similarity: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, list[GuardAction]]:
    """Blend (B, 3, S, S) restored toward inputs where similarity < threshold; returns all three.

    Step 1: half-way blend, similarity recomputed; step 2, if still below: keep the input.
    """
    out, sim = restored.clone(), similarity.clone()
    actions: list[GuardAction] = ["none"] * len(out)
    low = torch.nonzero(sim < threshold).flatten()
    if len(low):
        blend = 0.5 * (restored[low] + inputs[low])
        out[low] = blend
        sim[low] = identity_similarity(identity_fn, inputs[low], blend)
        for i in low.tolist():
            actions[i] = "blended"
    still = torch.nonzero(sim < threshold).flatten()
    if len(still):
        out[still] = inputs[still]
        sim[still] = 1.0
        for i in still.tolist():
            actions[i] = "kept input"
    return out, sim, actions


def _restore_batch(
    crops: list[np.ndarray],
    restorer: Restorer,
    identity_fn: IdentityFn | None,
    identity_guard: float | None,
) -> tuple[list[np.ndarray], list[float | None], list[float | None], list[GuardAction]]:
    """Restore uint8 crops once: restored crops, similarity before/after the guard, actions."""
    x = torch.cat([to_tensor(c) for c in crops])  # (B, 3, S, S) in [-1, 1]
    y = restorer(x).detach().float().cpu().clamp(-1, 1)
    assert y.shape == x.shape, f"restorer returned {tuple(y.shape)} for input {tuple(x.shape)}"
    n = len(crops)
    sim: list[float | None] = [None] * n
    sim_final: list[float | None] = [None] * n
    actions: list[GuardAction] = ["none"] * n
    if identity_fn is not None:
        s = identity_similarity(identity_fn, x, y)
        sim = [float(v) for v in s]
        if identity_guard is not None:
            y, s, actions = apply_identity_guard(identity_fn, x, y, identity_guard, s)
        sim_final = [float(v) for v in s]
    elif identity_guard is not None:
        raise ValueError("identity_guard needs identity_fn")
    return [to_uint8(t) for t in y], sim, sim_final, actions


def _aligned_input(img: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """An already aligned face resized to (size, size, 3), and its (2, 3) photo -> crop M."""
    import cv2

    h, w = img.shape[:2]
    crop = img
    if (h, w) != (size, size):
        interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LANCZOS4
        crop = np.clip(cv2.resize(img, (size, size), interpolation=interp), 0, 255)
    fx, fy = size / w, size / h
    m = np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5]])
    return crop.astype(np.uint8), m


def restore_photo(
    img: np.ndarray,
    restorer: Restorer,
    size: int,
    *,
    detect: DetectOptions | None = None,
    only_center_face: bool = False,
    face_index: int | None = None,
    upscale: float = 1.0,
    aligned: bool = False,
    batch_size: int = 4,
    samples: int = 1,
    identity_fn: IdentityFn | None = None,
    identity_guard: float | None = None,
    colour_match: bool = True,
    background: str | Upsampler = "lanczos",
    robust_alignment: bool = False,
) -> PhotoResult:
    """Restore every selected face of an (H, W, 3) uint8 RGB photo, `samples` times.

    With `aligned`, img is one aligned face: it is resized to size, restored, and returned as
    the image (no detection, colour match or paste). Faces are restored in batches of
    `batch_size` and pasted one at a time over the background upscaled by `upscale`.
    """
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8, (img.shape, img.dtype)
    assert samples >= 1 and batch_size >= 1, (samples, batch_size)
    timings = {"detect": 0.0, "align": 0.0, "restore": 0.0, "paste": 0.0}
    t = time.perf_counter()
    faces: list[FaceResult] = []
    if aligned:
        crop, m = _aligned_input(img, size)
        h, w = img.shape[:2]
        faces.append(FaceResult(0, (0.0, 0.0, float(w), float(h)), np.zeros((5, 2), np.float32),
                                m, float(np.sqrt(h * w)), crop))
    else:
        found: list[Face] = detect_faces(img, detect)
        rank = {id(f): i for i, f in enumerate(found)}
        chosen = select_faces(found, only_center_face, face_index, img.shape)
        timings["detect"] = time.perf_counter() - t
        t = time.perf_counter()
        for f in chosen:
            crop, m = align_face(img, f.landmarks5, size, robust=robust_alignment)
            faces.append(FaceResult(rank[id(f)], f.box, f.landmarks5, m,
                                    size / affine_scale(m), crop))
        timings["align"] = time.perf_counter() - t

    canvases: list[np.ndarray] = []
    if not aligned:
        t = time.perf_counter()
        canvas = upscale_image(img, upscale, background)
        canvases = [canvas] + [canvas.copy() for _ in range(samples - 1)]
        del canvas  # the list owns the canvases, so each can be released after conversion
        timings["paste"] += time.perf_counter() - t
    mask = face_mask(size)
    for start in range(0, len(faces), batch_size):
        batch = faces[start : start + batch_size]
        for k in range(samples):
            t = time.perf_counter()
            out, sim, sim_final, actions = _restore_batch(
                [f.cropped for f in batch], restorer, identity_fn, identity_guard
            )
            timings["restore"] += time.perf_counter() - t
            t = time.perf_counter()
            for f, o, s0, s1, a in zip(batch, out, sim, sim_final, actions, strict=True):
                if not aligned and colour_match:
                    o = np.rint(match_colour(o, f.cropped, mask)).astype(np.uint8)
                f.restored.append(o)
                f.identity.append(s0)
                f.identity_final.append(s1)
                f.guard.append(a)
                if not aligned:
                    m_out = output_matrix(f.matrix, img.shape, canvases[k].shape)
                    paste_face(canvases[k], o, m_out, mask)
            timings["paste"] += time.perf_counter() - t
    if aligned:
        images = [faces[0].restored[k] for k in range(samples)]
    else:  # one float canvas at a time is turned into uint8 and released (peak memory)
        images = []
        while canvases:
            images.append(canvas_to_uint8(canvases.pop(0)))
    return PhotoResult(faces, images, timings)
