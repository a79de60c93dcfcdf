"""iPrecision and iRecall (paper §4, eq. 11-12): identity-aware improved precision and recall.

iPred(e, E) = 1 iff there is an e' in E with I_e == I_e' and ||e - e'|| <= ||e' - NN_k(e', E)||,
where NN_k(e', E) is the k-th nearest neighbour of e' in E other than e' itself (Euclidean).
iPrecision = mean over restored e_g of iPred(e_g, E_real); iRecall = mean over real e_r of
iPred(e_r, E_restored); a restored image carries the identity of its ground truth. With a single
identity this is exactly the improved precision/recall of Kynkaanniemi et al. (2019).
Distances are computed with `torch.cdist` in float64, in row chunks to bound memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

CHUNK = 1024  # rows of a distance matrix computed at once
Features = np.ndarray | torch.Tensor


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, D) features as a float64 CPU tensor."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    t = t.detach().to("cpu", torch.float64)
    assert t.ndim == 2, f"features must be (N, D), got {tuple(t.shape)}"
    return t


def _as_ids(ids: Sequence[object] | np.ndarray | torch.Tensor | None, n: int) -> torch.Tensor:
    """Identity labels as int64 codes (N,); None means one shared identity."""
    if ids is None:
        return torch.zeros(n, dtype=torch.int64)
    arr = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids)
    assert arr.shape == (n,), f"need {n} identity labels, got shape {arr.shape}"
    _, codes = np.unique(arr.astype(str), return_inverse=True)
    return torch.from_numpy(codes.astype(np.int64))


def knn_radii(ref: Features, ks: Sequence[int], chunk: int = CHUNK) -> torch.Tensor:
    """Distance from each e' in E to its k-th nearest other member, for every k: (len(ks), N)."""
    e = _as_tensor(ref)  # (N, D)
    kmax = max(ks)
    if min(ks) < 1 or kmax >= e.shape[0]:
        raise ValueError(f"k must be in 1..{e.shape[0] - 1} for a set of {e.shape[0]}, got {ks}")
    rows = []
    for s in range(0, e.shape[0], chunk):
        d = torch.cdist(e[s : s + chunk], e)  # (c, N)
        rows.append(d.topk(kmax + 1, dim=1, largest=False).values)  # (c, kmax+1); col 0 is self
    nearest = torch.cat(rows)  # (N, kmax + 1)
    return torch.stack([nearest[:, k] for k in ks])  # (len(ks), N)


def ipred(
    query: np.ndarray | torch.Tensor,
    ref: np.ndarray | torch.Tensor,
    query_ids: Sequence[object] | np.ndarray | None = None,
    ref_ids: Sequence[object] | np.ndarray | None = None,
    k: int | Sequence[int] = 4,
    chunk: int = CHUNK,
) -> torch.Tensor:
    """iPred(e, E) of §4 for each query e: bool (N_q,) for an int k, (len(ks), N_q) for a list."""
    ks = [k] if isinstance(k, int) else list(k)
    q, e = _as_tensor(query), _as_tensor(ref)  # (Nq, D), (N, D)
    assert q.shape[1] == e.shape[1], (q.shape, e.shape)
    if (query_ids is None) != (ref_ids is None):
        raise ValueError("give identities for both sets or for neither")
    both = None
    if query_ids is not None and ref_ids is not None:
        both = np.array([*map(str, query_ids), *map(str, ref_ids)])
    codes = _as_ids(both, q.shape[0] + e.shape[0])
    qid, rid = codes[: q.shape[0]], codes[q.shape[0] :]  # (Nq,), (N,)
    radii = knn_radii(e, ks, chunk)  # (K, N)
    out = []
    for s in range(0, q.shape[0], chunk):
        d = torch.cdist(q[s : s + chunk], e)  # (c, N)
        same = qid[s : s + chunk, None] == rid[None, :]  # (c, N)
        inside = d[None] <= radii[:, None, :]  # (K, c, N)
        out.append((inside & same[None]).any(dim=2))  # (K, c)
    result = torch.cat(out, dim=1)  # (K, Nq)
    return result[0] if isinstance(k, int) else result


def iprecision_irecall(
    real: np.ndarray | torch.Tensor,
    restored: np.ndarray | torch.Tensor,
    ids: Sequence[object] | np.ndarray | None = None,
    k: int = 4,
) -> tuple[float, float]:
    """(iPrecision, iRecall), eq. 11-12, for paired sets; restored[i] has identity ids[i]."""
    curve = ipr_curve(real, restored, ids, [k])
    return curve[k]


def ipr_curve(
    real: np.ndarray | torch.Tensor,
    restored: np.ndarray | torch.Tensor,
    ids: Sequence[object] | np.ndarray | None = None,
    ks: Sequence[int] = (1, 2, 3, 4, 5),
) -> dict[int, tuple[float, float]]:
    """{k: (iPrecision, iRecall)} for several neighbourhood sizes (Fig. 7a)."""
    r, g = _as_tensor(real), _as_tensor(restored)
    assert r.shape == g.shape, f"real and restored must be paired: {r.shape} vs {g.shape}"
    labels = None if ids is None else list(ids)
    prec = ipred(g, r, labels, labels, list(ks)).double().mean(dim=1)  # (K,)
    rec = ipred(r, g, labels, labels, list(ks)).double().mean(dim=1)  # (K,)
    return {int(k): (float(p), float(c)) for k, p, c in zip(ks, prec, rec, strict=True)}
