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
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from facemend.inference.align import affine_scale, alignment_matrix, scale_matrix, warp_face
from facemend.inference.detail import resize, resize_uint8, transfer_detail
from facemend.inference.detect import DetectOptions, Face, detect_faces, select_faces
from facemend.inference.mask import paste_mask
from facemend.inference.paste import (
    ColourStats,
    Upsampler,
    canvas_to_uint8,
    colour_stats,
    match_colour,
    output_matrix,
    paste_face,
    upscale_image,
)
from facemend.io import to_tensor, to_uint8

Restorer = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, S, S) [-1, 1] -> (B, 3, S, S)
IdentityFn = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, S, S) [-1, 1] -> (B, D)
GuardAction = Literal["none", "blended", "kept input"]
ColourTarget = Callable[[int, ColourStats], ColourStats]  # (face index, its stats) -> target


@dataclass
class FaceResult:
    """One face of a photo: where it was, its crops, and per sample its identity and guard."""

    index: int  # rank among detected faces, largest first
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1) in the photo
    landmarks5: np.ndarray  # (5, 2) in the photo
    matrix: np.ndarray  # (2, 3) photo -> crop similarity
    source_size: float  # side of the crop in photo pixels (size / scale of matrix)
    cropped: np.ndarray  # (S, S, 3) uint8 aligned input crop at the face's output size S
    model_crop: np.ndarray | None = None  # (H, H, 3) uint8 the model's input (the crop at H)
    landmarks68: np.ndarray | None = None  # (68, 2) in the photo, when the detector fitted them
    restored: list[np.ndarray] = field(default_factory=list)  # per sample (S, S, 3) uint8, pasted
    identity: list[float | None] = field(default_factory=list)  # per sample, model output vs input
    identity_final: list[float | None] = field(default_factory=list)  # after the guard
    guard: list[GuardAction] = field(default_factory=list)  # per sample
    trust: list[float] = field(default_factory=list)  # per sample, share of the model's change


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


MAX_FACE_SIZE = 1024  # largest side a face crop is restored and kept at (memory bound)


def face_output_size(source_size: float, upscale: float, H: int,
                     max_size: int = MAX_FACE_SIZE) -> int:
    """Side S of a face's restored crop: its side in the output photo, between H and max_size.

    The crop is restored at the face's own size in the output (source side x upscale), so that
    pasting it back neither throws away the input's detail nor interpolates the model's output;
    faces smaller than the model's H are kept at H (their pasted copy is then downsampled).
    """
    return int(np.clip(round(source_size * upscale), H, max(H, max_size)))


def _aligned_input(img: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """An already aligned face resized to (size, size, 3), and its (2, 3) photo -> crop M."""
    import cv2

    h, w = img.shape[:2]
    crop = img
    if (h, w) != (size, size):
        interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LANCZOS4
        crop = np.clip(cv2.resize(img, (size, size), interpolation=interp), 0, 255)
    return crop.astype(np.uint8), _aligned_matrix(h, w, size)


def _aligned_matrix(h: int, w: int, size: int) -> np.ndarray:
    """(2, 3) transform from an (h, w) aligned face to its (size, size) resized copy."""
    fx, fy = size / w, size / h
    return np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5]])


def _finish_face(f: FaceResult, o: np.ndarray, aligned: bool, detail: bool,
                 colour_match: bool, mask_H: np.ndarray,
                 colour_target: ColourTarget | None = None) -> np.ndarray:
    """The restored (S, S, 3) uint8 face from the model's (H, H, 3) output `o` (guard applied):
    colour-matched at H, then the model's change carried to S (`detail.transfer_detail`)."""
    if not aligned and colour_match:
        target = (None if colour_target is None
                  else colour_target(f.index, colour_stats(f.model_crop, mask_H)))
        o = match_colour(o, f.model_crop, mask_H, target=target)
    if not detail:
        f.trust.append(1.0)
        return np.rint(np.clip(o, 0, 255)).astype(np.uint8)
    out, t = transfer_detail(f.cropped, f.model_crop, np.asarray(o, np.float32))
    f.trust.append(round(t, 4))
    if out.shape[0] != f.cropped.shape[0]:  # a face at or below H: the rule ran at H
        out = resize(out, f.cropped.shape[0])
    return np.rint(np.clip(out, 0, 255)).astype(np.uint8)


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
    detail: bool = True,
    face_shaped_mask: bool = True,
    max_face_size: int = MAX_FACE_SIZE,
    given_faces: list[Face] | None = None,
    colour_target: ColourTarget | None = None,
) -> PhotoResult:
    """Restore every selected face of an (H, W, 3) uint8 RGB photo, `samples` times.

    Each face is restored by the model at its resolution `size` and, with `detail` (default),
    kept at its own size S in the output with the input's detail above the model's band
    (`facemend.inference.detail`); `detail=False` is the plain rule: the model's output
    replaces the face, at `size`. With `aligned`, img is one aligned face, returned at its own
    size (no detection, colour match or paste). Faces are restored in batches of `batch_size`
    and pasted one at a time over the background upscaled by `upscale`, through a face-shaped
    mask from the 68 landmarks (`face_shaped_mask`) or a feathered square; with `detail` only
    their change to the input crop is pasted, so a face the restoration leaves as it was keeps
    the photo's own pixels. `given_faces` (e.g.
    faces tracked through a video) are restored instead of detecting faces; `colour_target`
    maps a face's index and its input's colour statistics (`paste.colour_stats`) to those its
    restoration is matched to (e.g. averaged along a track).
    """
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8, (img.shape, img.dtype)
    assert samples >= 1 and batch_size >= 1, (samples, batch_size)
    timings = {"detect": 0.0, "align": 0.0, "restore": 0.0, "paste": 0.0}
    t = time.perf_counter()
    faces: list[FaceResult] = []
    if aligned:
        h, w = img.shape[:2]
        side = max(h, w) if detail else size
        crop_S, _ = _aligned_input(img, side)
        crop_H = _aligned_input(crop_S, size)[0] if side != size else crop_S
        m = _aligned_matrix(h, w, size)
        faces.append(FaceResult(0, (0.0, 0.0, float(w), float(h)), np.zeros((5, 2), np.float32),
                                m, float(np.sqrt(h * w)), crop_S, model_crop=crop_H))
    else:
        if face_shaped_mask and not (detect or DetectOptions()).landmarks68:
            detect = dataclasses.replace(detect or DetectOptions(), landmarks68=True)
        found = detect_faces(img, detect) if given_faces is None else list(given_faces)
        rank = {id(f): i for i, f in enumerate(found)}
        chosen = select_faces(found, only_center_face, face_index, img.shape)
        timings["detect"] = time.perf_counter() - t
        t = time.perf_counter()
        for f in chosen:
            m = alignment_matrix(f.landmarks5, size, robust=robust_alignment)
            source = size / affine_scale(m)
            S = face_output_size(source, upscale, size, max_face_size) if detail else size
            crop_S = warp_face(img, scale_matrix(m, S / size), S)
            # the model sees the face at S brought down to H, anti-aliased
            crop_H = resize_uint8(crop_S, size) if size < S else crop_S
            faces.append(FaceResult(rank[id(f)], f.box, f.landmarks5, m, source, crop_S,
                                    model_crop=crop_H, landmarks68=f.landmarks68))
        timings["align"] = time.perf_counter() - t

    canvases: list[np.ndarray] = []
    if not aligned:
        t = time.perf_counter()
        canvas = upscale_image(img, upscale, background)
        canvases = [canvas] + [canvas.copy() for _ in range(samples - 1)]
        del canvas  # the list owns the canvases, so each can be released after conversion
        timings["paste"] += time.perf_counter() - t
    masks: dict[int, np.ndarray] = {}  # per face at H: colour statistics, pasting at S
    for f in faces:
        lm68 = f.landmarks68 if face_shaped_mask and not aligned else None
        masks[id(f)] = paste_mask(size, f.matrix, lm68)
    for start in range(0, len(faces), batch_size):
        batch = faces[start : start + batch_size]
        for k in range(samples):
            t = time.perf_counter()
            out, sim, sim_final, actions = _restore_batch(
                [f.model_crop for f in batch], restorer, identity_fn, identity_guard
            )
            timings["restore"] += time.perf_counter() - t
            t = time.perf_counter()
            for f, o, s0, s1, a in zip(batch, out, sim, sim_final, actions, strict=True):
                S = f.cropped.shape[0]
                o = _finish_face(f, o, aligned, detail, colour_match, masks[id(f)],
                                 colour_target)
                f.restored.append(o)
                f.identity.append(s0)
                f.identity_final.append(s1)
                f.guard.append(a)
                if not aligned:
                    m_out = output_matrix(scale_matrix(f.matrix, S / size), img.shape,
                                          canvases[k].shape)
                    paste_face(canvases[k], o, m_out, masks[id(f)],
                               source=f.cropped if detail else None)
            timings["paste"] += time.perf_counter() - t
    if aligned:  # at the input's own size; the plain rule (no detail) at the model's
        h, w = img.shape[:2]
        images = [o if o.shape[:2] == (h, w) or not detail else resize_uint8(o, (w, h))
                  for o in faces[0].restored]
    else:  # one float canvas at a time is turned into uint8 and released (peak memory)
        images = []
        while canvases:
            images.append(canvas_to_uint8(canvases.pop(0)))
    return PhotoResult(faces, images, timings)

