"""Draft heads on the policy's own last hidden state, for self-speculative decoding (``bellman.llm.speculative``).

Two kinds; head k (1-based) at position i predicts token i + k + 1 from the trunk's final (normed) hidden
state h_i, whose own output head predicts token i + 1:

- ``medusa``: K parallel heads (Cai et al. 2024, "Medusa", arXiv:2401.10774, sec. 2.1.1): head k is one
  residual block h + SiLU(W_k h + b_k) (W_k initialised to 0) followed by the policy's output head (shared and
  frozen here, where Medusa-1 trains a copy per head). All K drafts come from h_i alone.
- ``mtp``: K sequential modules (DeepSeek-AI 2024, "DeepSeek-V3 Technical Report", arXiv:2412.19437,
  sec. 2.2, eq. 21-23): module k joins RMSNorm(h^{k-1}_i) and RMSNorm(Emb(t_{i+k})) (h^0 = the trunk's h), a
  linear projection M_k [.; .] back to the hidden size, one transformer block, and the shared output head
  (after an RMSNorm of its own); its hidden h^k_i feeds module k + 1. Each draft sees the token drafted
  before it. The block's attention sees its own position only (no key / value cache of its own while
  drafting), so it is o(v(x)) followed by the SiLU-gated MLP. The projection starts as [I, 0] and the
  block's output matrices at 0, so module 1 starts as the trunk's own next-token head.

Both train with the trunk frozen by self-distillation (``distill_loss``): at every position of sequences the
policy sampled (or SFT data), the cross-entropy of head k to the policy's own distribution of the token it
predicts, softmax(z_{i+k}), i.e. the KL to it up to the policy's entropy.

Usage::

    from bellman.llm.draft import DraftTrainer, draft_heads, load_heads, save_heads
    heads = draft_heads(model, "mtp", 2)
    DraftTrainer(model, tok, heads, DraftConfig(total_steps=200)).train(prompts)
    save_heads(heads, "runs/draft")                  # runs/draft/draft.pt (an atomic checkpoint)
    heads = load_heads("runs/draft", model)
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bellman.core import checkpoint
from bellman.llm.config import DraftConfig, SamplingConfig
from bellman.llm.logprobs import plain_head
from bellman.llm.rollout import draw
from bellman.llm.speculative import probs

KINDS = ("medusa", "mtp")
FILE = "draft.pt"


def _parts(model: PreTrainedModel) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(decoder, output head, token embedding) of a causal LM whose logits are lm_head(decoder(...))."""
    parts = plain_head(model)
    if parts is None:
        raise ValueError(f"draft heads run on Llama / Qwen2 causal LMs (logits = lm_head(last hidden state)), "
                         f"got {type(model).__name__}")
    decoder, head = parts
    return decoder, head, decoder.get_input_embeddings()


def _frozen(head: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The output head's weight and bias outside autograd: the trunk stays frozen, no gradient reaches it."""
    return head.weight.detach(), None if head.bias is None else head.bias.detach()


class DraftHeads(nn.Module):
    """K draft heads; subclasses define ``hidden_states`` (training) and ``draft`` (decoding)."""

    kind = ""

    def __init__(self, hidden: int, heads: int, eps: float) -> None:
        super().__init__()
        if heads < 1:
            raise ValueError(f"heads must be an int >= 1, got {heads}")
        self.hidden, self.heads, self.eps = hidden, heads, eps

    def spec(self) -> dict:
        return {"kind": self.kind, "hidden": self.hidden, "heads": self.heads, "eps": self.eps}

    def train_logits(self, model: PreTrainedModel, h: torch.Tensor, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Logits (B, T - k, V) of every head k = 1..K at positions i = 0..T - k - 1 of h (B, T, d), the trunk's
        normed hidden states of the sequences ``tokens`` (B, T): head k at i predicts token i + k + 1."""
        _, head, _ = _parts(model)
        w, b = _frozen(head)
        return [F.linear(x, w, b) for x in self.hidden_states(model, h, tokens)]

    def hidden_states(self, model, h, tokens) -> list[torch.Tensor]:
        raise NotImplementedError

    def draft(self, model: PreTrainedModel, h: torch.Tensor, y: torch.Tensor, k: int, s: SamplingConfig,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """k <= K drafts (B, k) after the token y (B,), which the output at the trunk's hidden state h (B, d)
        predicted, and the logits (B, k, V) each was drawn from (under ``speculative.probs(., s)``)."""
        raise NotImplementedError

    def _sample(self, logits: torch.Tensor, s: SamplingConfig, g: torch.Generator | None) -> torch.Tensor:
        return logits.argmax(-1) if s.temperature == 0 else draw(probs(logits, s), g)


class MedusaHeads(DraftHeads):
    """Medusa heads: head k is h + SiLU(W_k h + b_k), then the shared output head."""

    kind = "medusa"

    def __init__(self, hidden: int, heads: int, eps: float = 1e-6) -> None:
        super().__init__(hidden, heads, eps)
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(heads))
        for b in self.blocks:
            nn.init.zeros_(b.weight)

    def _block(self, k: int, h: torch.Tensor) -> torch.Tensor:
        return h + F.silu(self.blocks[k](h))

    def hidden_states(self, model, h, tokens):
        t = h.shape[1]
        return [self._block(k - 1, h[:, :t - k]) for k in range(1, self.heads + 1)]

    def draft(self, model, h, y, k, s, generator=None):
        _, head, _ = _parts(model)
        # the k heads' hidden states through the output head in one product: its weights are read once
        logits = F.linear(torch.stack([self._block(j, h) for j in range(k)], 1), head.weight, head.bias)
        return self._sample(logits, s, generator), logits


class MTPModule(nn.Module):
    """One DeepSeek-V3 MTP module: M [RMSNorm(h); RMSNorm(Emb(t))] -> transformer block -> RMSNorm."""

    def __init__(self, hidden: int, intermediate: int, eps: float) -> None:
        super().__init__()
        self.norm_h, self.norm_e = nn.RMSNorm(hidden, eps=eps), nn.RMSNorm(hidden, eps=eps)
        self.proj = nn.Linear(2 * hidden, hidden, bias=False)
        self.attn_norm, self.mlp_norm, self.out_norm = (nn.RMSNorm(hidden, eps=eps) for _ in range(3))
        self.v, self.o = nn.Linear(hidden, hidden, bias=False), nn.Linear(hidden, hidden, bias=False)
        self.gate = nn.Linear(hidden, intermediate, bias=False)
        self.up = nn.Linear(hidden, intermediate, bias=False)
        self.down = nn.Linear(intermediate, hidden, bias=False)
        with torch.no_grad():
            self.proj.weight.zero_()[:, :hidden] = torch.eye(hidden)
            self.o.weight.zero_()
            self.down.weight.zero_()

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """The module's hidden state h^k from h^{k-1} and the embedding e of the next token (both (..., d))."""
        x = self.proj(torch.cat([self.norm_h(h), self.norm_e(e)], -1))
        x = x + self.o(self.v(self.attn_norm(x)))  # attention over its own position
        m = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(m)) * self.up(m))


class MTPHeads(DraftHeads):
    """K sequential MTP modules sharing the policy's embedding and output head."""

    kind = "mtp"

    def __init__(self, hidden: int, heads: int, eps: float = 1e-6, intermediate: int | None = None) -> None:
        super().__init__(hidden, heads, eps)
        self.intermediate = intermediate or 4 * hidden
        self.mtp = nn.ModuleList(MTPModule(hidden, self.intermediate, eps) for _ in range(heads))

    def spec(self) -> dict:
        return {**super().spec(), "intermediate": self.intermediate}

    def hidden_states(self, model, h, tokens):
        _, _, emb = _parts(model)
        t, out, x = h.shape[1], [], h
        for k in range(1, self.heads + 1):
            # module k at i: h^{k-1}_i (computed at positions 0..T-k) and the embedding of token i + k
            x = self.mtp[k - 1](x[:, :t - k], F.embedding(tokens[:, k:], emb.weight.detach()))
            out.append(self.mtp[k - 1].out_norm(x))
        return out

    def draft(self, model, h, y, k, s, generator=None):
        _, head, emb = _parts(model)
        x, tok, drafts, logits = h, y, [], []
        for j in range(k):
            x = self.mtp[j](x, emb(tok))
            z = F.linear(self.mtp[j].out_norm(x), head.weight, head.bias)
            tok = self._sample(z, s, generator)
            drafts.append(tok)
            logits.append(z)
        return torch.stack(drafts, 1), torch.stack(logits, 1)


def draft_heads(model: PreTrainedModel, kind: str, heads: int) -> DraftHeads:
    """New draft heads of ``kind`` ("medusa" or "mtp") for ``model``, on its device and dtype."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    c = model.config
    eps = getattr(c, "rms_norm_eps", 1e-6)
    out = MedusaHeads(c.hidden_size, heads, eps) if kind == "medusa" else MTPHeads(
        c.hidden_size, heads, eps, c.intermediate_size)
    p = next(model.parameters())
    return out.to(device=p.device, dtype=p.dtype)


def trunk(model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen trunk's normed last hidden states (B, T, d) and logits (B, T, V), without gradients."""
    from bellman.llm.batching import position_ids

    decoder, head, _ = _parts(model)
    with torch.no_grad():
        h = decoder(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), use_cache=False
                    ).last_hidden_state
        return h, F.linear(h, head.weight, head.bias)


def distill_loss(model: PreTrainedModel, heads: DraftHeads, ids: torch.Tensor, mask: torch.Tensor,
                 ) -> tuple[torch.Tensor, list[float]]:
    """Self-distillation loss of the heads on sequences (B, T) with attention mask (B, T): the mean over
    heads of the cross-entropy of head k at position i to the policy's softmax(z_{i+k}), over positions
    where tokens i .. i + k are all real; and each head's top-1 agreement with the policy's argmax there."""
    h, z = trunk(model, ids, mask)
    m, losses, agree = mask.bool(), [], []
    for k, logits in enumerate(heads.train_logits(model, h, ids), start=1):
        valid = m[:, :-k] & m[:, k:]  # the mask is one run of ones per row: all tokens between are real
        teacher = z[:, k:].float().softmax(-1)
        ce = -(teacher * logits.float().log_softmax(-1)).sum(-1)
        n = valid.sum().clamp(min=1)
        losses.append((ce * valid).sum() / n)
        agree.append(float(((logits.argmax(-1) == z[:, k:].argmax(-1)) & valid).sum() / n))
    return torch.stack(losses).mean(), agree


class DraftTrainer:
    """Trains draft heads with the trunk frozen on the policy's own samples of ``prompts`` (or on given
    sequences: ``step_on``)."""

    def __init__(self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, heads: DraftHeads,
                 config: DraftConfig | None = None) -> None:
        self.model, self.tok, self.heads, self.config = model, tok, heads, config or DraftConfig()
        self.optimizer = torch.optim.AdamW(heads.parameters(), lr=self.config.learning_rate, weight_decay=0.0)

    def step_on(self, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
        """One update on sequences (B, T) (a rollout's prompt + completion, or SFT data)."""
        loss, agree = distill_loss(self.model, self.heads, ids, mask)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.heads.parameters(), 1.0)
        self.optimizer.step()
        return {"loss": float(loss.detach()), **{f"agree_{k + 1}": a for k, a in enumerate(agree)}}

    def step_on_rollout(self, ro) -> dict[str, float]:
        """One update on the sequences of a ``Rollout`` the policy sampled (as GRPO's, to refresh the heads)."""
        return self.step_on(torch.cat([ro.prompt_ids, ro.completion_ids], 1),
                            torch.cat([ro.prompt_mask, ro.completion_mask], 1))

    def train(self, prompts: list[str]) -> list[dict[str, float]]:
        """``config.total_steps`` updates, each on ``config.batch_size`` prompts (cycled, seeded) and the
        policy's sampled completions of them."""
        from bellman.llm.engine import get_engine

        c, engine, history = self.config, get_engine(self.model, self.tok), []
        if not prompts:
            raise ValueError("distillation needs at least one prompt")
        g = torch.Generator().manual_seed(c.seed)
        sampling = SamplingConfig(temperature=c.temperature, max_new_tokens=c.max_new_tokens)
        self.model.eval()
        for step in range(c.total_steps):
            batch = [prompts[int(i)] for i in torch.randint(len(prompts), (c.batch_size,), generator=g)]
            ro = engine.generate(batch, sampling, seed=c.seed * 100_003 + step)
            history.append(self.step_on_rollout(ro))
        return history


def save_heads(heads: DraftHeads, out: str | Path) -> Path:
    """Write the heads to ``out/draft.pt`` (an atomic ``core.checkpoint``); returns the file."""
    return checkpoint.save({"spec": heads.spec(), "state": heads.state_dict()}, Path(out) / FILE)


def load_heads(path: str | Path, model: PreTrainedModel) -> DraftHeads:
    """Heads saved by ``save_heads`` in the directory ``path`` (or the file itself), for ``model``."""
    path = Path(path)
    state = checkpoint.load(path / FILE if path.is_dir() else path)
    spec = state["spec"]
    if spec["hidden"] != model.config.hidden_size:
        raise ValueError(f"the heads at {path} are for hidden size {spec['hidden']}, the model's is "
                         f"{model.config.hidden_size}")
    heads = draft_heads(model, spec["kind"], spec["heads"])
    heads.load_state_dict(state["state"])
    return heads
