"""iPred / iPrecision / iRecall (§4, eq. 11-12): hand-worked cases, Fig. 4 (c)-(e), and the
reduction to Kynkaanniemi et al. (2019) improved precision/recall with a single identity."""

from __future__ import annotations

import numpy as np
import pytest

from facemend.metrics.identity import ipr_curve, iprecision_irecall, ipred, knn_radii


def test_knn_radius_excludes_self():
    E = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.0]])
    # Neighbour distances of (0,0): 1, 3, 7 -> k=1: 1, k=2: 3; of (7,0): 4, 6, 7.
    r = knn_radii(E, [1, 2, 3]).numpy()
    np.testing.assert_allclose(r[:, 0], [1, 3, 7])
    np.testing.assert_allclose(r[:, 3], [4, 6, 7])
    with pytest.raises(ValueError, match="k must be"):
        knn_radii(E, [4])


def test_hand_worked_example():
    # Real set: two identities A at (0,0),(2,0) and B at (10,0),(10,3), k = 1.
    # Radii (1st NN other than itself): (0,0)->2, (2,0)->2, (10,0)->3, (10,3)->3.
    E = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 3.0]])
    ids = ["A", "A", "B", "B"]
    q = np.array([[1.0, 0.0], [1.0, 0.0], [5.0, 0.0], [10.0, 2.0], [4.0, 0.0]])
    q_ids = ["A", "B", "A", "B", "A"]
    got = ipred(q, E, q_ids, ids, k=1).tolist()
    # (1,0) A: 1 <= 2 to (0,0) -> 1. (1,0) B: only near A points -> 0. (5,0) A: 3 > 2 -> 0.
    # (10,2) B: 2 <= 3 to (10,0) -> 1. (4,0) A: exactly 2 <= 2 to (2,0) -> 1 (boundary included).
    assert got == [True, False, False, True, True]


def test_figure4_cases():
    # Real e'_1 (id 1) with neighbours at distance 1..4 (k = 4: radius 4); e'_2 (id 2) far away.
    E = np.array([[0, 0], [1, 0], [0, 2], [-3, 0], [0, -4], [20, 0]], dtype=float)
    ids = [1, 9, 9, 9, 9, 2]
    # (c) e is the nearest neighbour of e'_1 and has its identity -> iPred = 1.
    assert ipred(np.array([[0.5, 0.0]]), E, [1], ids, k=4).tolist() == [True]
    # (d) same identity but outside the k-NN ball of e'_1 (and of every other id-1 point) -> 0.
    assert ipred(np.array([[0.0, 6.0]]), E, [1], ids, k=4).tolist() == [False]
    # (e) e is nearest to e'_2 (inside its ball) but has a different identity -> 0.
    assert ipred(np.array([[20.5, 0.0]]), E, [1], ids, k=4).tolist() == [False]


def _kynkaanniemi(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Independent brute-force improved precision/recall (Kynkaanniemi et al. 2019)."""

    def radii(x: np.ndarray) -> np.ndarray:
        d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    def coverage(points: np.ndarray, manifold: np.ndarray) -> float:
        r = radii(manifold)
        hits = 0
        for p in points:
            hits += any(np.linalg.norm(p - m) <= rm for m, rm in zip(manifold, r, strict=True))
        return hits / len(points)

    return coverage(fake, real), coverage(real, fake)


@pytest.mark.parametrize("k", [1, 3, 4])
def test_single_identity_reduces_to_improved_precision_recall(k):
    rng = np.random.default_rng(k)
    real = rng.normal(size=(60, 8))
    fake = rng.normal(loc=0.3, scale=1.3, size=(60, 8))
    p, r = iprecision_irecall(real, fake, ids=["same"] * 60, k=k)
    assert (p, r) == pytest.approx(_kynkaanniemi(real, fake, k), abs=1e-12)
    assert (p, r) == pytest.approx(iprecision_irecall(real, fake, ids=None, k=k), abs=1e-12)


def test_larger_k_never_lowers_scores_and_chunking_is_invisible():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(80, 16))
    fake = real + rng.normal(scale=0.8, size=real.shape)
    ids = rng.integers(0, 10, size=80)
    curve = ipr_curve(real, fake, ids, ks=(1, 2, 3, 4, 5, 6))
    ps = [curve[k][0] for k in sorted(curve)]
    rs = [curve[k][1] for k in sorted(curve)]
    assert ps == sorted(ps) and rs == sorted(rs)
    small_chunks = ipred(fake, real, ids, ids, k=[1, 4], chunk=7).double().mean(1).tolist()
    assert small_chunks == pytest.approx([curve[1][0], curve[4][0]], abs=1e-12)


def test_perfect_restoration_scores_one():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(20, 4))
    ids = np.repeat(np.arange(5), 4)
    assert iprecision_irecall(real, real.copy(), ids, k=4) == (1.0, 1.0)
