"""Causal linear attention: a kernel phi(q).phi(k) in place of exp(q.k / sqrt(d)), so attention is an RNN.

Katharopoulos et al. 2020, "Transformers are RNNs", arXiv:2006.16236, secs. 3.2-3.4: with features a (in
the numerator) and b (in the denominator) of queries and keys,

    o_i = sum_{j<=i} (a(q_i) . a(k_j)) v_j  /  sum_{j<=i} b(q_i) . b(k_j)

is computed in three equal ways:

- ``parallel`` (training): the masked (T, T) matrices A = tril(a(Q) a(K)^T), D = tril(b(Q) b(K)^T);
  o = A V / D 1. Given the state of earlier tokens it adds their part.
- ``chunked``: ``parallel`` block by block, each after the state of the blocks before it: O(T c) memory
  for blocks of c tokens instead of O(T^2) (the chunkwise form: Hua et al. 2022, "Transformer Quality in
  Linear Time", arXiv:2202.10447; Yang et al. 2023, "Gated Linear Attention Transformers with
  Hardware-Efficient Training", arXiv:2312.06635). The built-in model runs it (c = 64) on several tokens.
- ``recurrent`` (decoding, one token), an O(1) state per token: S_i = S_{i-1} + a(k_i) v_i^T,
  z_i = z_{i-1} + b(k_i), o_i = a(q_i) S_i / b(q_i) . z_i.

``normalise=False`` drops the denominator, for TransNormer's NormAttention (Qin et al. 2022, "The Devil
in Linear Transformer", arXiv:2210.10340): a norm of the output, applied by the caller, in place of the
denominator whose gradients are unbounded. The feature maps (``features``):

- ``elu``: phi(x) = elu(x) + 1 (Katharopoulos et al., sec. 3.2);
- ``performer``: FAVOR+ positive random features (Choromanski et al. 2020, "Rethinking Attention with
  Performers", arXiv:2009.14794, secs. 2.3-2.4), phi(x) = exp(W x' - |x'|^2 / 2) / sqrt(m), x' = x d^(-1/4),
  W with orthogonal rows (``orthogonal_features``): E[phi(q) . phi(k)] = exp(q . k / sqrt(d)), the softmax
  kernel, drawn once (no redraws);
- ``cosformer``: ReLU features with cosFormer's re-weighting cos(pi/2 (i - j) / M) (Qin et al. 2022,
  "cosFormer", arXiv:2202.08791), written as [phi cos(pi i / 2M), phi sin(pi i / 2M)] for
  queries and keys alike; M = ``max_position_embeddings`` bounds the positions.

With elu or performer features the model rotates the numerator's features by RoPE (RoFormer, Su et al.
2021, arXiv:2104.09864, sec. 3.3 "RoPE with linear attention"): a = R phi, b = phi.

flash-linear-attention (``fla`` 0.6.0), the kernels of these recurrences, is written in Triton; Triton
has no CPU driver (``RuntimeError: 0 active drivers``), so this is plain torch, in float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FEATURE_MAPS = ("elu", "performer", "cosformer")
EPS = 1e-6  # in the denominator: rows that see no key (padding) give 0, not 0 / 0
CHUNK = 64


def orthogonal_features(m: int, d: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """W (m, d): blocks of d orthogonal directions, uniformly drawn (QR of a Gaussian matrix with R's diagonal
    made positive: Mezzadri 2007, "How to generate random matrices from the classical compact groups",
    arXiv:math-ph/0609050), with the chi-distributed norms of Gaussian vectors (Performer sec. 2.4)."""
    blocks = []
    for _ in range(-(-m // d)):
        q, r = torch.linalg.qr(torch.randn(d, d, generator=generator))
        blocks.append((q * torch.sign(torch.diagonal(r))).T)
    norms = torch.randn(m, d, generator=generator).norm(dim=1, keepdim=True)
    return torch.cat(blocks)[:m] * norms


def features(x: torch.Tensor, kind: str, w: torch.Tensor | None = None) -> torch.Tensor:
    """phi(x) of queries or keys x (..., d), in float32: elu + 1, FAVOR+ with W = ``w`` (m, d), or ReLU
    (cosFormer's, before its re-weighting)."""
    x = x.float()
    if kind == "elu":
        return F.elu(x) + 1
    if kind == "performer":
        x = x * x.shape[-1] ** -0.25
        return torch.exp(x @ w.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(w.shape[0])
    if kind == "cosformer":
        return F.relu(x)
    raise ValueError(f"feature_map must be one of {FEATURE_MAPS}, got {kind!r}")


def cos_reweight(phi: torch.Tensor, position_ids: torch.Tensor, m: int) -> torch.Tensor:
    """cosFormer's features [phi cos(pi i / 2M), phi sin(pi i / 2M)] (..., T, 2d) at positions i (B, T):
    their products give phi(q_i) . phi(k_j) cos(pi/2 (i - j) / M)."""
    if int(position_ids.max()) >= m:
        raise ValueError(f"cosFormer's re-weighting covers positions below M = max_position_embeddings = {m}, "
                         f"got position {int(position_ids.max())}; build the model with a larger "
                         "max_position_embeddings")
    angle = (math.pi / (2 * m)) * position_ids.float()[:, None, :, None]
    return torch.cat([phi * angle.cos(), phi * angle.sin()], -1)


def parallel(a_q: torch.Tensor, a_k: torch.Tensor, b_q: torch.Tensor, b_k: torch.Tensor, v: torch.Tensor,
             state: tuple[torch.Tensor, torch.Tensor] | None = None, normalise: bool = True,
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Outputs (B, H, T, d_v) of T tokens that attend causally to each other and to the earlier tokens summed
    in ``state`` = (S (B, H, m_a, d_v), z (B, H, m_b)) (None: no earlier tokens), and the state after them.
    Features (B, H, T, m) are float32; keys' features are 0 at padding."""
    v = v.float()
    causal = torch.ones(a_q.shape[-2], a_k.shape[-2], dtype=torch.bool, device=v.device).tril()
    a = (a_q @ a_k.transpose(-1, -2)).masked_fill(~causal, 0.0)
    num = a @ v
    s, z = a_k.transpose(-1, -2) @ v, b_k.sum(-2)
    if state is not None:
        num = num + a_q @ state[0]
        s, z = s + state[0], z + state[1]
    if not normalise:
        return num, (s, z)
    den = (b_q @ b_k.transpose(-1, -2)).masked_fill(~causal, 0.0).sum(-1, keepdim=True)
    if state is not None:
        den = den + b_q @ state[1][..., None]
    return num / (den + EPS), (s, z)


def chunked(a_q: torch.Tensor, a_k: torch.Tensor, b_q: torch.Tensor, b_k: torch.Tensor, v: torch.Tensor,
            state: tuple[torch.Tensor, torch.Tensor] | None = None, normalise: bool = True, chunk: int = CHUNK,
            ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """``parallel`` over blocks of ``chunk`` tokens, each after the state of the ones before it."""
    out = []
    for start in range(0, v.shape[-2], chunk):
        block = slice(start, start + chunk)
        o, state = parallel(a_q[..., block, :], a_k[..., block, :], b_q[..., block, :], b_k[..., block, :],
                            v[..., block, :], state, normalise)
        out.append(o)
    return torch.cat(out, -2), state


def recurrent(a_q: torch.Tensor, a_k: torch.Tensor, b_q: torch.Tensor, b_k: torch.Tensor, v: torch.Tensor,
              state: tuple[torch.Tensor, torch.Tensor] | None, normalise: bool = True,
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One token (features (B, H, 1, m), v (B, H, 1, d_v)): S <- S + a(k) v^T, z <- z + b(k), then
    o = a(q) S / b(q) . z; returns o (B, H, 1, d_v) and the new state."""
    v = v.float()
    s, z = (a_k.transpose(-1, -2) @ v, b_k[..., 0, :]) if state is None else (
        state[0] + a_k.transpose(-1, -2) @ v, state[1] + b_k[..., 0, :])
    num = a_q @ s
    if not normalise:
        return num, (s, z)
    return num / (b_q @ z[..., None] + EPS), (s, z)
