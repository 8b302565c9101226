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
predicts, softmax(z_{i+k}), i.e. the KL to it up to the policy's entropy. ``DraftTrainer.train`` samples the
policy's completions of the prompts once, runs the frozen trunk over them once, and takes every update on
a minibatch of those cached hidden states and teacher distributions: an update costs the heads' compute only.

Draft vocabulary (Zhao et al. 2025, "FR-Spec: Accelerating Large-Vocabulary Language Models via
Frequency-Ranked Speculative Sampling", arXiv:2502.14856): a draft through the shared output head reads
the whole V x d head, as costly as a fifth of SmolLM2's forward at V = 49,152. Heads with a ``vocab`` draft
over those token ids only (the policy's most probable tokens on its own samples: ``vocab_by_mass``),
q = 0 elsewhere. The speculative-sampling rule is exact for any draft distribution, so this changes how
often drafts pass, never what is sampled.

Usage::

    from bellman.llm.draft import DraftTrainer, draft_heads, load_heads, save_heads
    heads = draft_heads(model, "mtp", 2)
    DraftTrainer(model, tok, heads, DraftConfig(total_steps=200, vocab=2048)).train(prompts)
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


class DraftHeads(nn.Module):
    """K draft heads; subclasses define ``hidden_states`` (training) and ``draft`` (decoding).

    ``vocab`` (buffer): the token ids the heads draft over, sorted; empty: the whole vocabulary."""

    kind = ""

    def __init__(self, hidden: int, heads: int, eps: float) -> None:
        super().__init__()
        if heads < 1:
            raise ValueError(f"heads must be an int >= 1, got {heads}")
        self.hidden, self.heads, self.eps = hidden, heads, eps
        self.register_buffer("vocab", torch.empty(0, dtype=torch.long))
        self._rows: tuple | None = None

    def spec(self) -> dict:
        return {"kind": self.kind, "hidden": self.hidden, "heads": self.heads, "eps": self.eps}

    def set_vocab(self, ids: torch.Tensor) -> None:
        """Draft over the token ids ``ids`` only (any order, no repeats); an empty tensor: all of them."""
        ids = torch.as_tensor(ids, dtype=torch.long).flatten().sort().values
        if ids.numel() and (ids[1:] == ids[:-1]).any():
            raise ValueError("the draft vocabulary repeats a token id")
        self.vocab = ids.to(self.vocab.device)
        self._rows = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """A saved vocabulary of another size than the current one (e.g. heads that chose one after the
        checkpoint's model was built) replaces it before the tensors are copied."""
        if prefix + "vocab" in state_dict:
            self.set_vocab(state_dict[prefix + "vocab"])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def output(self, model: PreTrainedModel) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The output head's rows (and bias) of the draft vocabulary, outside autograd (the trunk stays frozen),
        kept while the head's weights are unchanged: until an in-place edit bumps their version counter or
        ``weights_changed`` is called (a fused optimiser step bumps no counter; GRPO calls it after each)."""
        _, head, _ = _parts(model)
        w, b = head.weight, head.bias
        if not self.vocab.numel():
            return w.detach(), None if b is None else b.detach()
        key = (w.data_ptr(), w._version, None if b is None else b._version)
        if self._rows is None or self._rows[0] != key:  # normal tensors even when taken while decoding, so the
            with torch.inference_mode(False), torch.no_grad():  # distillation's autograd may keep them
                rows = (w[self.vocab].contiguous(), None if b is None else b[self.vocab].contiguous())
            self._rows = (key, rows)
        return self._rows[1]

    def weights_changed(self) -> None:
        """The model's weights were updated: take the output head's rows afresh."""
        self._rows = None

    def to_vocab(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids of indices into the draft vocabulary."""
        return self.vocab[idx] if self.vocab.numel() else idx

    def full(self, logits: torch.Tensor, v: int) -> torch.Tensor:
        """Draft-vocabulary logits (..., |vocab|) as logits over all v tokens, -inf outside the vocabulary."""
        if not self.vocab.numel():
            return logits
        out = logits.new_full((*logits.shape[:-1], v), float("-inf"))
        out[..., self.vocab] = logits
        return out

    def train_logits(self, model: PreTrainedModel, h: torch.Tensor, tokens: torch.Tensor) -> list[torch.Tensor]:
        """Logits (B, T - k, |vocab|) of every head k = 1..K at positions i = 0..T - k - 1 of h (B, T, d), the
        trunk's normed hidden states of the sequences ``tokens`` (B, T): head k at i predicts token i + k + 1."""
        w, b = self.output(model)
        return [F.linear(x, w, b) for x in self.hidden_states(model, h, tokens)]

    def hidden_states(self, model, h, tokens) -> list[torch.Tensor]:
        raise NotImplementedError

    def draft(self, model: PreTrainedModel, h: torch.Tensor, y: torch.Tensor, k: int, s: SamplingConfig,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """k <= K drafts (B, k) after the token y (B,), which the output at the trunk's hidden state h (B, d)
        predicted, and the logits (B, k, V) over the whole vocabulary each was drawn from (under
        ``speculative.probs(., s)``; -inf outside the draft vocabulary)."""
        raise NotImplementedError

    def _sample(self, logits: torch.Tensor, s: SamplingConfig, g: torch.Generator | None) -> torch.Tensor:
        """A draft from draft-vocabulary logits, as a token id: top-k / top-p over the vocabulary's logits are
        those over all V with -inf outside it, so this is a draw from ``probs(full(logits), s)``."""
        return self.to_vocab(logits.argmax(-1) if s.temperature == 0 else draw(probs(logits, s), g))


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
        w, b = self.output(model)
        # the k heads' hidden states through the output head in one product: its weights are read once
        logits = F.linear(torch.stack([self._block(j, h) for j in range(k)], 1), w, b)
        return self._sample(logits, s, generator), self.full(logits, _parts(model)[1].weight.shape[0])


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
        w, b = self.output(model)
        x, tok, drafts, logits = h, y, [], []
        for j in range(k):
            x = self.mtp[j](x, emb(tok))
            z = F.linear(self.mtp[j].out_norm(x), w, b)
            tok = self._sample(z, s, generator)
            drafts.append(tok)
            logits.append(z)
        return torch.stack(drafts, 1), self.full(torch.stack(logits, 1), head.weight.shape[0])


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


def trunk(model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The frozen trunk's normed last hidden states (B, T, d), without gradients."""
    from bellman.llm.batching import position_ids

    decoder, _, _ = _parts(model)
    with torch.no_grad():
        return decoder(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask), use_cache=False
                       ).last_hidden_state


def teacher(model: PreTrainedModel, h: torch.Tensor, vocab: torch.Tensor | None, rows: int = 1024,
            ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """The policy's next-token distribution at hidden states h (..., d), in blocks of ``rows`` positions (the
    (rows, V) logits are the largest tensor): its probabilities of the tokens ``vocab`` (..., |vocab|) (all V
    where ``vocab`` is empty; None where ``vocab`` is None: not kept), its argmax (...) and its probabilities
    summed over the positions (V,)."""
    _, head, _ = _parts(model)
    flat = h.reshape(-1, h.shape[-1])
    p, top, mass = [], [], torch.zeros(head.weight.shape[0], device=h.device)
    with torch.no_grad():
        for x in flat.split(rows):
            z = F.linear(x, head.weight, head.bias).float()
            q = (z - z.logsumexp(-1, keepdim=True)).exp_()
            if vocab is not None:
                p.append(q[:, vocab] if vocab.numel() else q)
            top.append(z.argmax(-1))
            mass += q.sum(0)
    return torch.cat(p).view(*h.shape[:-1], -1) if p else None, torch.cat(top).view(h.shape[:-1]), mass


def vocab_by_mass(mass: torch.Tensor, size: int) -> torch.Tensor:
    """The ``size`` token ids of largest summed probability ``mass`` (V,), the draft vocabulary (FR-Spec ranks
    tokens by their frequency in a corpus; the policy's expected frequency on its own samples is that with
    the sampling noise taken out). Ties go to the lower id."""
    return torch.sort(-mass, stable=True).indices[:size]


def _loss(model: PreTrainedModel, heads: DraftHeads, h: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
          p: torch.Tensor, top: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    """``distill_loss`` given the trunk's h (B, T, d) and the teacher's p (B, T, |vocab|) and argmax (B, T)."""
    m, losses, agree = mask.bool(), [], []
    for k, logits in enumerate(heads.train_logits(model, h, tokens), start=1):
        valid = m[:, :-k] & m[:, k:]  # the mask is one run of ones per row: all tokens between are real
        ce = -(p[:, k:] * logits.float().log_softmax(-1)).sum(-1)
        n = valid.sum().clamp(min=1)
        losses.append((ce * valid).sum() / n)
        agree.append(float(((heads.to_vocab(logits.argmax(-1)) == top[:, k:]) & valid).sum() / n))
    return torch.stack(losses).mean(), agree


def distill_loss(model: PreTrainedModel, heads: DraftHeads, ids: torch.Tensor, mask: torch.Tensor, start: int = 0,
                 h: torch.Tensor | None = None) -> tuple[torch.Tensor, list[float]]:
    """Self-distillation loss of the heads on sequences (B, T) with attention mask (B, T), from column
    ``start`` on (e.g. the prompts' last column: the completions only): the mean over heads of the
    cross-entropy of head k at position i to the policy's softmax(z_{i+k}) (its probabilities of the draft
    vocabulary), over positions where tokens i .. i + k are all real; and each head's top-1 agreement with
    the policy's argmax there. ``h``: the trunk's states from column ``start`` on, where already computed."""
    h = trunk(model, ids, mask)[:, start:] if h is None else h
    p, top, _ = teacher(model, h, heads.vocab)
    return _loss(model, heads, h, ids[:, start:], mask[:, start:], p, top)


class DraftTrainer:
    """Trains draft heads with the trunk frozen on the policy's own samples of ``prompts`` (or on given
    sequences: ``step_on``, ``fit``)."""

    def __init__(self, model: PreTrainedModel, tok: PreTrainedTokenizerBase, heads: DraftHeads,
                 config: DraftConfig | None = None) -> None:
        self.model, self.tok, self.heads, self.config = model, tok, heads, config or DraftConfig()
        self.optimizer = torch.optim.AdamW(heads.parameters(), lr=self.config.learning_rate, weight_decay=0.0)

    def _update(self, loss: torch.Tensor, agree: list[float]) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.heads.parameters(), 1.0)
        self.optimizer.step()
        return {"loss": float(loss.detach()), **{f"agree_{k + 1}": a for k, a in enumerate(agree)}}

    def choose_vocab(self, h: torch.Tensor) -> None:
        """Where ``config.vocab`` asks for a draft vocabulary smaller than the model's and the heads have none:
        the ``config.vocab`` tokens of largest summed probability under the policy at the hidden states h
        (positions, d) of its own samples (``vocab_by_mass``)."""
        c, heads = self.config, self.heads
        if c.vocab and c.vocab < _parts(self.model)[1].weight.shape[0] and not heads.vocab.numel():
            _, _, mass = teacher(self.model, h, None)  # the mass only: no (positions, V) copy kept
            heads.set_vocab(vocab_by_mass(mass, c.vocab))

    def step_on(self, ids: torch.Tensor, mask: torch.Tensor, start: int = 0) -> dict[str, float]:
        """One update on sequences (B, T) (a rollout's prompt + completion, or SFT data), from column
        ``start`` on; the first one chooses the draft vocabulary (``choose_vocab``)."""
        h = trunk(self.model, ids, mask)[:, start:]
        self.choose_vocab(h[mask[:, start:].bool()])
        return self._update(*distill_loss(self.model, self.heads, ids, mask, start, h))

    def step_on_rollout(self, ro) -> dict[str, float]:
        """One update on the completions of a ``Rollout`` the policy sampled (as GRPO's, to refresh the heads),
        from the prompts' last token on."""
        return self.step_on(torch.cat([ro.prompt_ids, ro.completion_ids], 1),
                            torch.cat([ro.prompt_mask, ro.completion_mask], 1), ro.prompt_ids.shape[1] - 1)

    def fit(self, sequences: list[tuple[torch.Tensor, torch.Tensor, int]]) -> list[dict[str, float]]:
        """``config.total_steps`` updates on minibatches of ``config.batch_size`` of the given sequences
        ((ids (B, T), mask (B, T), start column) blocks), the trunk run over them once: its hidden states and
        the teacher's distributions are cached. Chooses the draft vocabulary first where ``config.vocab`` asks
        for one and the heads have none."""
        c, model, heads = self.config, self.model, self.heads
        hs, toks, masks = [], [], []
        for ids, mask, start in sequences:
            for i in range(0, ids.shape[0], 16):  # the trunk in blocks of 16 sequences
                hs.append(trunk(model, ids[i:i + 16], mask[i:i + 16])[:, start:])
                toks.append(ids[i:i + 16, start:])
                masks.append(mask[i:i + 16, start:])
        t = max(x.shape[1] for x in toks)
        h = torch.cat([F.pad(x, (0, 0, 0, t - x.shape[1])) for x in hs])
        tokens = torch.cat([F.pad(x, (0, t - x.shape[1])) for x in toks])
        mask = torch.cat([F.pad(x, (0, t - x.shape[1])) for x in masks])
        self.choose_vocab(h[mask.bool()])
        p, top, _ = teacher(model, h, heads.vocab)
        g = torch.Generator().manual_seed(c.seed)
        history = []
        for _ in range(c.total_steps):
            i = torch.randperm(h.shape[0], generator=g)[:c.batch_size]
            history.append(self._update(*_loss(model, heads, h[i], tokens[i], mask[i], p[i], top[i])))
        return history

    def sample(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        """The policy's completions of ``config.samples`` prompts (without repeats while there are enough,
        seeded), 64 per ``generate`` call, as ``fit``'s (ids, mask, start) blocks from the prompts' last token."""
        from bellman.llm.engine import get_engine

        c = self.config
        if not prompts:
            raise ValueError("distillation needs at least one prompt")
        g = torch.Generator().manual_seed(c.seed)
        order = torch.cat([torch.randperm(len(prompts), generator=g) for _ in range(-(-c.samples // len(prompts)))])
        chosen = [prompts[int(i)] for i in order[:c.samples]]
        engine = get_engine(self.model, self.tok)
        sampling = SamplingConfig(temperature=c.temperature, max_new_tokens=c.max_new_tokens)
        self.model.eval()
        out = []
        for n, i in enumerate(range(0, len(chosen), 64)):
            ro = engine.generate(chosen[i:i + 64], sampling, seed=c.seed * 100_003 + n)
            out.append((torch.cat([ro.prompt_ids, ro.completion_ids], 1),
                        torch.cat([ro.prompt_mask, ro.completion_mask], 1), ro.prompt_ids.shape[1] - 1))
        return out

    def train(self, prompts: list[str]) -> list[dict[str, float]]:
        """``fit`` on the policy's samples of ``prompts`` (``sample``)."""
        return self.fit(self.sample(prompts))


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
    vocab = state["state"].get("vocab", torch.empty(0, dtype=torch.long))
    if vocab.numel() and int(vocab.max()) >= model.config.vocab_size:
        raise ValueError(f"the heads at {path} draft token id {int(vocab.max())}, beyond the model's vocabulary "
                         f"of {model.config.vocab_size}")
    heads.load_state_dict(state["state"])
    return heads
