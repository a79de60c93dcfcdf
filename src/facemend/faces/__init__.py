"""Face identity tools: dlib's face-recognition ResNet ported to PyTorch, and its face chips."""

from facemend.faces.chip import aligned_to_chip, embed_aligned, get_face_chip
from facemend.faces.dlib_format import FaceModelError, read_dlib_net
from facemend.faces.dlib_resnet import (
    SAME_PERSON_THRESHOLD,
    FaceNet,
    face_distance,
    load_face_net,
)

__all__ = [
    "SAME_PERSON_THRESHOLD",
    "FaceModelError",
    "FaceNet",
    "aligned_to_chip",
    "embed_aligned",
    "face_distance",
    "get_face_chip",
    "load_face_net",
    "read_dlib_net",
]
