"""Face alignment: 5-point similarity transform to the FFHQ template, and the FFHQ 68-point rule.

Coordinates are pixel-index coordinates (pixel centres at integers, as dlib and cv2 use them).
A transform `M` is a (2, 3) float64 matrix mapping photo points to crop points:
crop = M[:, :2] @ photo + M[:, 2].

The 5-point template (`TEMPLATE_512`, dlib's 5-point order) was measured, not borrowed: dlib's HOG
detector + 5-point predictor on the 477 FFHQ-rule-aligned faces of celeba/eval256 (256 px,
aligned with the exact rule of `align_ffhq`), scaled to 512, averaged, and symmetrised (averaged
with its mirror image, left and right points swapped) so a flipped face aligns like its mirror.
`template_from_landmarks` recomputes it; tests check it against hq512/ffhq_*. It matches the
widely used GFPGAN/facexlib 512 template (eye centres 124 vs 126 px apart) but uses dlib's points
(eye corners and the bottom of the nose) directly, so no point needs to be guessed.
"""

from __future__ import annotations

import numpy as np

# (5, 2) at 512 px: image-right eye outer, inner; image-left eye outer, inner; bottom of nose.
TEMPLATE_512 = np.array(
    [[343.13, 241.97], [291.96, 245.16], [167.87, 241.97], [219.04, 245.16], [255.50, 341.09]],
    dtype=np.float64,
)
_MIRROR_5 = [2, 3, 0, 1, 4]  # dlib 5-point index of each point's mirror partner


def template(size: int) -> np.ndarray:
    """(5, 2) template landmarks for a `size` x `size` crop (pixel-index coordinates)."""
    return (TEMPLATE_512 + 0.5) * (size / 512.0) - 0.5


def template_from_landmarks(landmarks5: np.ndarray, size: int) -> np.ndarray:
    """Symmetrised mean (5, 2) template at 512 px from (N, 5, 2) landmarks on size-px crops."""
    lm = (np.asarray(landmarks5, np.float64) + 0.5) * (512.0 / size) - 0.5  # (N, 5, 2)
    mean = lm.mean(axis=0)
    mirror = mean[_MIRROR_5].copy()
    mirror[:, 0] = 511.0 - mirror[:, 0]
    return 0.5 * (mean + mirror)


def similarity_transform(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """(2, 3) weighted least-squares similarity (Umeyama 1991) mapping (N, 2) src onto dst."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst  # (2,)
    sc, dc = src - mu_s, dst - mu_d  # (N, 2)
    cov = (dc * w[:, None]).T @ sc  # (2, 2)
    var_s = float(w @ (sc**2).sum(axis=1))
    u, s, vt = np.linalg.svd(cov)
    d = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(s) @ d)) / max(var_s, 1e-12)
    a = scale * rot
    return np.concatenate([a, (mu_d - a @ mu_s)[:, None]], axis=1)


def robust_similarity_transform(src: np.ndarray, dst: np.ndarray, iters: int = 10) -> np.ndarray:
    """Similarity fitted by iteratively reweighted least squares (Huber weights on residuals)."""
    m = similarity_transform(src, dst)
    scale = np.linalg.norm(dst - dst.mean(0), axis=1).mean()
    delta = 0.02 * scale  # residuals below ~2% of the face size count fully
    for _ in range(iters):
        r = np.linalg.norm(apply_affine(m, src) - dst, axis=1)
        m = similarity_transform(src, dst, weights=np.minimum(1.0, delta / np.maximum(r, 1e-9)))
    return m


def alignment_matrix(landmarks5: np.ndarray, size: int, robust: bool = False) -> np.ndarray:
    """(2, 3) photo -> crop transform taking dlib's 5 landmarks onto the template at `size`."""
    dst = template(size)
    if robust:
        return robust_similarity_transform(landmarks5, dst)
    return similarity_transform(landmarks5, dst)


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(N, 2) points mapped by a (2, 3) affine matrix."""
    return np.asarray(pts, np.float64) @ m[:, :2].T + m[:, 2]


def inverse_affine(m: np.ndarray) -> np.ndarray:
    """(2, 3) inverse of a (2, 3) affine matrix."""
    a_inv = np.linalg.inv(m[:, :2])
    return np.concatenate([a_inv, (-a_inv @ m[:, 2])[:, None]], axis=1)


def affine_scale(m: np.ndarray) -> float:
    """Linear scale factor of an affine map (sqrt of |det|): output pixels per input pixel."""
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def warp_affine(
    src: np.ndarray,
    m: np.ndarray,
    dsize: tuple[int, int],
    border: str = "reflect",
    interpolation: str = "lanczos",
) -> np.ndarray:
    """Warp (H, W, C) src by m (src -> dst coordinates) into (dsize[1], dsize[0], C), anti-aliased.

    Reads only the source region that lands in the output; when the map shrinks (scale < 1) the
    region is first Gaussian low-passed so no aliasing appears. Lanczos-4 interpolation by default.
    """
    import cv2

    w_out, h_out = dsize
    inv = inverse_affine(m)
    corners = np.array([[-2, -2], [w_out + 1, -2], [-2, h_out + 1], [w_out + 1, h_out + 1]])
    pts = apply_affine(inv, corners)  # (4, 2) in src
    scale = affine_scale(m)
    margin = 4.0 / min(scale, 1.0)
    h, w = src.shape[:2]
    x0 = int(np.clip(np.floor(pts[:, 0].min() - margin), 0, w - 1))
    y0 = int(np.clip(np.floor(pts[:, 1].min() - margin), 0, h - 1))
    x1 = int(np.clip(np.ceil(pts[:, 0].max() + margin), x0 + 1, w))
    y1 = int(np.clip(np.ceil(pts[:, 1].max() + margin), y0 + 1, h))
    roi = src[y0:y1, x0:x1]
    m = m.copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)  # roi coordinates -> dst
    if scale < 1.0:
        # Anti-alias: Gaussian low-pass so the total blur is ~0.3 output px (the response of a
        # one-pixel box at Nyquist) before a single interpolation; sharper than resize + warp.
        sigma = 0.3 * np.sqrt(1.0 / scale**2 - 1.0)
        roi = cv2.GaussianBlur(roi.astype(np.float32), (0, 0), sigma,
                               borderType=cv2.BORDER_REFLECT_101)
    flags = {"cubic": cv2.INTER_CUBIC, "linear": cv2.INTER_LINEAR, "lanczos": cv2.INTER_LANCZOS4}
    modes = {"reflect": cv2.BORDER_REFLECT_101, "constant": cv2.BORDER_CONSTANT,
             "replicate": cv2.BORDER_REPLICATE}
    out = cv2.warpAffine(roi, m, (w_out, h_out), flags=flags[interpolation],
                         borderMode=modes[border], borderValue=0)
    if src.dtype == np.uint8 and out.dtype != np.uint8:
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.reshape(h_out, w_out, *src.shape[2:])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(2, 3) matrix of x -> outer(inner(x))."""
    a = outer[:, :2] @ inner[:, :2]
    return np.concatenate([a, (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]], axis=1)


def scale_matrix(m: np.ndarray, factor: float) -> np.ndarray:
    """(2, 3) photo -> crop transform for the same crop sampled `factor` times finer."""
    out = np.asarray(m, np.float64) * factor
    out[:, 2] += 0.5 * factor - 0.5  # pixel centres: c' = (c + 0.5) * factor - 0.5
    return out


def warp_face(img: np.ndarray, m: np.ndarray, size: int, border: str = "reflect") -> np.ndarray:
    """(size, size, 3) aligned crop of an (H, W, 3) photo under the photo -> crop transform m."""
    return warp_affine(img, m, (size, size), border=border)


def align_face(
    img: np.ndarray, landmarks5: np.ndarray, size: int, robust: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(size, size, 3) crop aligned on the 5-point template, and its (2, 3) photo -> crop M."""
    m = alignment_matrix(landmarks5, size, robust=robust)
    return warp_face(img, m, size), m


# --- The FFHQ rule (NVlabs/ffhq-dataset, download_ffhq.py, recreate_aligned_images) -------------


def ffhq_quad(landmarks68: np.ndarray) -> tuple[np.ndarray, float]:
    """FFHQ crop quad (4, 2) (top-left, bottom-left, bottom-right, top-right) and its side."""
    lm = np.asarray(landmarks68, np.float64)
    eye_left, eye_right = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    eye_avg = 0.5 * (eye_left + eye_right)
    eye_to_eye = eye_right - eye_left
    mouth_avg = 0.5 * (lm[48] + lm[54])
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)


def ffhq_matrix(quad: np.ndarray, size: int) -> np.ndarray:
    """(2, 3) photo -> crop similarity realised by the FFHQ rule's quad at output `size`."""
    a_inv = np.stack([quad[3] - quad[0], quad[1] - quad[0]], axis=1) / size  # crop -> photo
    a = np.linalg.inv(a_inv)
    return np.concatenate([a, (-a @ quad[0] - 0.5)[:, None]], axis=1)


def align_ffhq(
    img: np.ndarray, landmarks68: np.ndarray, size: int, supersample: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """(size, size, 3) crop by the exact FFHQ rule (shrink, crop, reflect pad + blur, quad).

    Follows `recreate_aligned_images` of the FFHQ dataset script step by step; the quad transform
    renders at `supersample` x size (FFHQ: 4096 for 1024) then Lanczos-resizes to `size`.
    Returns the crop and the (2, 3) photo -> crop similarity it realises (for paste-back).
    """
    import scipy.ndimage
    from PIL import Image

    quad, qsize = ffhq_quad(landmarks68)
    m = ffhq_matrix(quad, size)
    pil = Image.fromarray(img)
    transform_size = size * supersample
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(pil.size[0] / shrink)), int(np.rint(pil.size[1] / shrink)))
        pil = pil.resize(rsize, Image.LANCZOS)
        quad, qsize = quad / shrink, qsize / shrink
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
            int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0),
            min(crop[2] + border, pil.size[0]), min(crop[3] + border, pil.size[1]))
    if crop[2] - crop[0] < pil.size[0] or crop[3] - crop[1] < pil.size[1]:
        pil = pil.crop(crop)
        quad = quad - crop[0:2]
    pad = (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
           int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))
    pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0),
           max(pad[2] - pil.size[0] + border, 0), max(pad[3] - pil.size[1] + border, 0))
    if max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        arr = np.pad(np.float32(pil), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w, _ = arr.shape
        yy, xx, _ = np.ogrid[:h, :w, :1]
        mask = np.maximum(
            1.0 - np.minimum(np.float32(xx) / pad[0], np.float32(w - 1 - xx) / pad[2]),
            1.0 - np.minimum(np.float32(yy) / pad[1], np.float32(h - 1 - yy) / pad[3]),
        )
        blur = qsize * 0.02
        arr += (scipy.ndimage.gaussian_filter(arr, [blur, blur, 0]) - arr) * np.clip(
            mask * 3.0 + 1.0, 0.0, 1.0
        )
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
        pil = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad = quad + pad[:2]
    pil = pil.transform((transform_size, transform_size), Image.QUAD, (quad + 0.5).flatten(),
                        Image.BILINEAR)
    if size < transform_size:
        pil = pil.resize((size, size), Image.LANCZOS)
    return np.asarray(pil, dtype=np.uint8), m
