"""The speculative-sampling rule: its samples have the target's distribution (temperature 1, top-p, top-k),
greedy speculation is greedy decoding, and the returned log-probs are the target's."""

import math

import pytest
import torch
from scipy.stats import chi2

from bellman.llm.config import SamplingConfig
from bellman.llm.speculative import accept, probs, speculative_step

torch.set_num_threads(1)
V, K, N = 4, 3, 400_000  # vocabulary, drafts per step, sampled sequences


def markov(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Target and draft logits of two first-order Markov chains over V tokens ((V, V): row = previous token),
    the draft a perturbed target, as a trained draft head is."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(V, V, generator=g) * 1.5
    return target, target + torch.randn(V, V, generator=g)


def speculative_sequences(target: torch.Tensor, draft: torch.Tensor, s: SamplingConfig, length: int, seed: int,
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """N sequences of ``length`` tokens after token 0 sampled by speculative steps (drafts from the draft chain,
    verified against the target chain), and the log-probs returned with them."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(N, length + K + 1, dtype=torch.long)
    logp = torch.zeros(N, length + K + 1)
    last, filled, rows = torch.zeros(N, dtype=torch.long), torch.zeros(N, dtype=torch.long), torch.arange(N)
    q_draft = probs(draft, s)
    while bool((filled < length).any()):
        drafts, prev = [], last
        for _ in range(K):
            prev = torch.multinomial(q_draft[prev], 1, generator=g).squeeze(1)
            drafts.append(prev)
        drafts = torch.stack(drafts, 1)
        context = torch.cat([last[:, None], drafts], 1)  # the token before each of the k + 1 positions
        tokens, n, lp = speculative_step(target[context], draft[context[:, :K]], drafts, s, g)
        emitted = torch.arange(K + 1) <= n[:, None]
        cols = (filled[:, None] + torch.arange(K + 1)).clamp(max=out.shape[1] - 1)
        out[rows[:, None].expand_as(cols)[emitted], cols[emitted]] = tokens[emitted]
        logp[rows[:, None].expand_as(cols)[emitted], cols[emitted]] = lp[emitted]
        last = torch.where(filled < length, tokens[rows, n], last)
        filled = filled + torch.where(filled < length, n + 1, 0)
    return out[:, :length], logp[:, :length]


def exact_joint(target: torch.Tensor, s: SamplingConfig, length: int) -> torch.Tensor:
    """P(x_1 .. x_length | x_0 = 0) of plain sampling, flattened over V^length cells."""
    p = probs(target, s)
    joint = p[0]
    for _ in range(length - 1):  # cell c (last token c % V) -> cells c V + x
        joint = (joint[:, None] * p[torch.arange(joint.shape[0]) % V]).reshape(-1)
    return joint


def chi_square_p(counts: torch.Tensor, expected_p: torch.Tensor) -> float:
    """p-value of Pearson's chi-square test of counts against the cell probabilities (cells of p > 0); 0 if a
    sample fell where they have no mass."""
    keep = expected_p > 0
    if counts[~keep].sum() > 0:
        return 0.0
    e = expected_p[keep].double() * counts.sum()
    stat = float(((counts[keep].double() - e) ** 2 / e).sum())
    return float(chi2.sf(stat, int(keep.sum()) - 1))


@pytest.mark.parametrize("s", [SamplingConfig(temperature=1.0), SamplingConfig(temperature=1.0, top_p=0.8),
                               SamplingConfig(temperature=0.7, top_k=3)], ids=["t1", "top_p", "t07_top_k"])
def test_speculative_samples_have_the_target_distribution(s):
    target, draft = markov(0)
    length = 3
    seqs, logp = speculative_sequences(target, draft, s, length, seed=1)
    cell = (seqs * V ** torch.arange(length - 1, -1, -1)).sum(1)
    counts = torch.bincount(cell, minlength=V ** length)
    exact = exact_joint(target, s, length)
    tv = 0.5 * float((counts / N - exact).abs().sum())
    assert tv < 0.005 and chi_square_p(counts, exact) > 1e-3
    # the test has the power to see a 1% shift: the target moved by total variation 0.01 is rejected
    shifted = 0.99 * exact + 0.01 * (exact > 0) / (exact > 0).sum()
    assert chi_square_p(counts, shifted) < 1e-3
    # the draft chain alone (every draft accepted) is far from the target
    assert chi_square_p(counts, exact_joint(draft, s, length)) < 1e-6
    # returned log-probs: log softmax(target / T) before filtering, at the emitted tokens
    context = torch.cat([torch.zeros(N, 1, dtype=torch.long), seqs[:, :-1]], 1)
    torch.testing.assert_close(logp, torch.log_softmax(target / s.temperature, -1)[context, seqs])


def test_a_wrong_residual_is_detected():
    """Drawing a rejected position's token from p instead of max(0, p - q) biases the samples; the
    distribution test sees it (the exactness test above is not vacuous)."""
    target, draft = markov(0)
    s, g = SamplingConfig(), torch.Generator().manual_seed(2)
    p, q = probs(target, s), probs(draft, s)
    d = torch.multinomial(q[0], N, replacement=True, generator=g)  # one draft after token 0
    tokens, n = accept(p[torch.stack([torch.zeros_like(d), d], 1)], q[0].expand(N, 1, V), d[:, None], g)
    right = torch.bincount(tokens[:, 0], minlength=V)
    wrong = torch.where(n == 1, d, torch.multinomial(p[0], N, replacement=True, generator=g))
    assert chi_square_p(right, p[0]) > 1e-3
    assert chi_square_p(torch.bincount(wrong, minlength=V), p[0]) < 1e-6
    # the acceptance rate is sum_x min(p, q), the rule's expected value
    assert abs(float(n.float().mean()) - float(torch.minimum(p[0], q[0]).sum())) < 4 / math.sqrt(N)


def test_greedy_speculation_is_greedy_decoding():
    target, draft = markov(3)
    s = SamplingConfig(temperature=0)
    seqs, logp = speculative_sequences(target, draft, s, 8, seed=0)
    greedy, x = [], 0
    for _ in range(8):
        x = int(target[x].argmax())
        greedy.append(x)
    assert torch.equal(seqs, torch.tensor(greedy).expand(N, 8))
    context = torch.cat([torch.zeros(N, 1, dtype=torch.long), seqs[:, :-1]], 1)
    torch.testing.assert_close(logp, torch.log_softmax(target, -1)[context, seqs])


def test_accept_checks_shapes():
    with pytest.raises(ValueError, match="p must be"):
        accept(torch.rand(2, 3, V), torch.rand(2, 3, V), torch.zeros(2, 3, dtype=torch.long))
