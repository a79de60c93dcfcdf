"""EMA vector quantizer for skip features (§3.1.2, eq. 2-3).

- `forward(p)`: every feature vector p_ij is replaced by its nearest code word (eq. 2). In training
  the output is p + sg(pq - p) (straight-through), and the commitment term ||p - sg(pq)||^2 of
  eq. 3 is returned for the caller to weight by beta. In eval mode the output is exactly the
  codebook lookup of the argmin indices.
- `ema_update(p_hq)`: the first term of eq. 3 approximated by EMA (van den Oord et al. 2017),
  computed only from features of ground-truth HQ images: cluster sizes and sums decay by
  `decay`, cluster sizes are Laplace-smoothed, and codes whose cluster size falls below
  `dead_threshold` are restarted on random HQ features. The codebook is initialised from the first
  HQ batch. An optional `all_reduce` makes the statistics identical on every DDP rank.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from einops import rearrange
from torch import nn

from facemend.models.layers import assert_shape

AllReduce = Callable[[torch.Tensor], torch.Tensor]  # sums a tensor over processes, in place


@torch.no_grad()
def nearest_code(flat: torch.Tensor, codebook: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Eq. 2: argmin_k ||p - c_k||^2 for (N, C) features against (K, C) codes -> (N,) indices."""
    c2 = codebook.square().sum(1)  # (K,)
    if torch.onnx.is_in_onnx_export():  # one step: a traced split would freeze the batch size
        return (c2.unsqueeze(0) - 2.0 * flat @ codebook.t()).argmin(1)
    out = []
    for part in flat.split(chunk):
        # ||p||^2 is the same for every k, so argmin(||c||^2 - 2 p.c) suffices
        d = c2.unsqueeze(0) - 2.0 * part @ codebook.t()  # (n, K)
        out.append(d.argmin(1))
    return torch.cat(out) if out else flat.new_zeros(0, dtype=torch.long)


def commitment_loss(p: torch.Tensor, pq: torch.Tensor) -> torch.Tensor:
    """Eq. 3, second term: ||p - sg(pq)||^2 (mean over elements)."""
    return (p - pq.detach()).square().mean()


class EMAQuantizer(nn.Module):
    """One codebook of `size` code words of dimension `dim`, updated by EMA from HQ features."""

    def __init__(
        self, dim: int, size: int = 1024, decay: float = 0.99, eps: float = 1e-5,
        dead_threshold: float = 1e-3,
    ) -> None:
        super().__init__()
        self.dim, self.size, self.decay, self.eps = dim, size, decay, eps
        self.dead_threshold = dead_threshold
        self.register_buffer("codebook", torch.randn(size, dim))  # (K, C)
        self.register_buffer("cluster_size", torch.zeros(size))  # (K,) EMA counts
        self.register_buffer("embed_sum", torch.zeros(size, dim))  # (K, C) EMA sums
        self.register_buffer("initted", torch.zeros((), dtype=torch.bool))

    def forward(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eq. 2 (+ straight-through): (B, C, H, W) -> (quantized, commitment loss, indices)."""
        B, C, H, W = p.shape
        assert_shape(p, [B, self.dim, H, W])
        flat = rearrange(p, "b c h w -> (b h w) c")
        idx = nearest_code(flat.detach().float(), self.codebook)  # (BHW,)
        pq = rearrange(self.codebook[idx], "(b h w) c -> b c h w", b=B, h=H, w=W).to(p.dtype)
        indices = idx.reshape(B, H, W)
        if not self.training:
            return pq, p.new_zeros(()), indices
        loss = commitment_loss(p, pq)
        return p + (pq - p).detach(), loss, indices

    @torch.no_grad()
    def ema_update(
        self, p_hq: torch.Tensor, generator: torch.Generator | None = None,
        all_reduce: AllReduce | None = None,
    ) -> None:
        """Eq. 3, first term by EMA, from ground-truth features p_hq (B, C, H, W) only."""
        flat = rearrange(p_hq.detach().float(), "b c h w -> (b h w) c")  # (N, C)
        if not bool(self.initted):
            self._init_from(flat, generator, all_reduce)
        idx = nearest_code(flat, self.codebook)
        onehot_sum = torch.zeros(self.size, device=flat.device).index_add_(
            0, idx, torch.ones_like(idx, dtype=torch.float32)
        )  # (K,)
        embed_sum = torch.zeros_like(self.embed_sum).index_add_(0, idx, flat)  # (K, C)
        if all_reduce is not None:
            all_reduce(onehot_sum)
            all_reduce(embed_sum)
        self.cluster_size.mul_(self.decay).add_(onehot_sum, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(embed_sum, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.size * self.eps) * n  # Laplace
        self.codebook.copy_(self.embed_sum / smoothed.unsqueeze(1))
        self._restart_dead(flat, generator, all_reduce)

    def _random_rows(
        self, flat: torch.Tensor, n: int, generator: torch.Generator | None,
        all_reduce: AllReduce | None,
    ) -> torch.Tensor:
        """n random rows of flat (with replacement when short); identical across DDP ranks."""
        gen_device = generator.device if generator is not None else flat.device
        pick = torch.randint(0, flat.shape[0], (n,), generator=generator, device=gen_device)
        rows = flat[pick.to(flat.device)].clone()
        if all_reduce is not None:  # rank 0's choice everywhere: sum of (rows on 0, 0 elsewhere)
            import torch.distributed as dist

            if dist.get_rank() != 0:
                rows.zero_()
            all_reduce(rows)
        return rows

    def _init_from(
        self, flat: torch.Tensor, generator: torch.Generator | None, all_reduce: AllReduce | None
    ) -> None:
        rows = self._random_rows(flat, self.size, generator, all_reduce)
        self.codebook.copy_(rows)
        self.embed_sum.copy_(rows)
        self.cluster_size.fill_(1.0)
        self.initted.fill_(True)

    def _restart_dead(
        self, flat: torch.Tensor, generator: torch.Generator | None, all_reduce: AllReduce | None
    ) -> None:
        dead = self.cluster_size < self.dead_threshold  # (K,)
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        rows = self._random_rows(flat, n_dead, generator, all_reduce)
        self.codebook[dead] = rows
        self.embed_sum[dead] = rows
        self.cluster_size[dead] = 1.0

    def extra_repr(self) -> str:
        return f"dim={self.dim}, size={self.size}, decay={self.decay}"
