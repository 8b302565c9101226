"""PPO for RLHF: KL-penalised rewards, GAE, clipped losses and reward normalisation on hand-made numbers."""

import pytest
import torch

from bellman.core.losses import clipped_surrogate_loss, value_loss
from bellman.core.returns import standardize, token_gae
from bellman.llm.ppo import RunningMoments, kl_penalised_rewards

torch.set_num_threads(1)   # tiny models: one thread is fastest on a shared 2-core machine

# Two completions over 3 positions; the second is one token shorter (right padding).
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def test_kl_penalised_rewards_score_at_last_token():
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -9.0]])
    ref = torch.tensor([[-1.5, -2.0, -1.0], [-0.5, -1.0, -1.0]])
    rewards = kl_penalised_rewards(torch.tensor([2.0, -1.0]), logp, ref, MASK, kl_coef=0.1)
    expected = torch.tensor([[-0.1 * 0.5, 0.0, -0.1 * 0.5 + 2.0],
                             [-0.1 * -0.5, 0.0 - 1.0, 0.0]])
    torch.testing.assert_close(rewards, expected)
    with pytest.raises(ValueError, match="at least one completion token"):
        kl_penalised_rewards(torch.zeros(2), logp, ref, torch.tensor([[1.0, 0, 0], [0, 0, 0]]), 0.1)
    with pytest.raises(ValueError, match="kl_coef"):
        kl_penalised_rewards(torch.zeros(2), logp, ref, MASK, -1.0)
    with pytest.raises(ValueError, match="scores"):
        kl_penalised_rewards(torch.zeros(3), logp, ref, MASK, 0.1)


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.5, -1.0, 7.0]])
    values = torch.tensor([[0.5, 0.2, 0.4], [0.1, 0.3, 5.0]])
    gamma, lam = 0.9, 0.5
    adv, ret = token_gae(rewards, values, MASK, gamma, lam)
    # row 0: d2 = 1 - 0.4 = 0.6; d1 = 0 + 0.9*0.4 - 0.2 = 0.16; d0 = 0 + 0.9*0.2 - 0.5 = -0.32
    a2 = 0.6
    a1 = 0.16 + 0.45 * a2
    a0 = -0.32 + 0.45 * a1
    # row 1 ends at t=1 (the padded value 5.0 and reward 7.0 are ignored): d1 = -1 - 0.3; d0 = 0.5 + 0.9*0.3 - 0.1
    b1 = -1.3
    b0 = 0.67 + 0.45 * b1
    torch.testing.assert_close(adv, torch.tensor([[a0, a1, a2], [b0, b1, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[a0 + 0.5, a1 + 0.2, a2 + 0.4], [b0 + 0.1, b1 + 0.3, 0.0]]))
    # gamma = lam = 1: the return is the sum of the future rewards.
    _, ret = token_gae(rewards, values, MASK, 1.0, 1.0)
    torch.testing.assert_close(ret, torch.tensor([[1.0, 1.0, 1.0], [-0.5, -1.0, 0.0]]))
    with pytest.raises(ValueError, match="gamma"):
        token_gae(rewards, values, MASK, 1.5, 0.5)
    with pytest.raises(ValueError, match="shape"):
        token_gae(rewards[:, :2], values, MASK)


def test_value_clipping():
    old = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    v = torch.tensor([[0.5, -0.1, 0.3], [1.0, 0.0, 99.0]])
    ret = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    loss, frac = value_loss(v, old, ret, 0.2, MASK)
    # per token max((v-R)^2, (clip(v, -0.2, 0.2) - R)^2): 0.64 (clipped), 0.01, 0.09, 1.0, 0.0; mean of 5
    # (PPORLHFTrainer halves it: L_V = 1/2 mean ...)
    assert loss.item() == pytest.approx((0.64 + 0.01 + 0.09 + 1.0 + 0.0) / 5)
    assert frac.item() == pytest.approx(1 / 5)
    loss, _ = value_loss(v, old, ret, None, MASK)
    assert loss.item() == pytest.approx((0.25 + 0.01 + 0.09 + 1.0 + 0.0) / 5)


def test_policy_loss_clips_the_ratio():
    old = torch.zeros(2, 3)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.0], [1.1, 1.0, 50.0]]))
    adv = torch.tensor([[1.0, -1.0, 2.0], [-1.0, 3.0, 9.0]])
    loss, frac = clipped_surrogate_loss(torch.exp(logp - old), adv, 0.2, MASK)
    # tokens: A=1 r=1.5 -> -1.2 (clipped); A=-1 r=0.5 -> 0.8 (clipped); A=2 r=1 -> -2; A=-1 r=1.1 -> 1.1; A=3 r=1 -> -3
    assert loss.item() == pytest.approx((-1.2 + 0.8 - 2.0 + 1.1 - 3.0) / 5)
    assert frac.item() == pytest.approx(2 / 5)


def test_only_completion_tokens_carry_loss():
    """Garbage at padded positions (mask 0) changes neither loss; a completion token does."""
    g = torch.Generator().manual_seed(0)
    logp, old, adv, v, old_v, ret = (torch.randn(2, 3, generator=g) for _ in range(6))
    junk = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 50.0]])          # only the padded slot [1, 2]

    def policy_loss(logp, old, adv):
        return clipped_surrogate_loss(torch.exp(logp - old), adv, 0.2, MASK)

    def clipped_value_loss(v, old_v, ret):
        return value_loss(v, old_v, ret, 0.2, MASK)

    for fn, args in ((policy_loss, (logp, old, adv)), (clipped_value_loss, (v, old_v, ret))):
        clean = fn(*args)[0]
        dirty = fn(*(a + junk for a in args))[0]
        assert dirty.item() == pytest.approx(clean.item(), abs=1e-6)
        moved = fn(args[0] + junk.roll(-1, 1), *args[1:])[0]     # [1, 1] is a completion token
        assert moved.item() != pytest.approx(clean.item(), abs=1e-3)


def test_masked_standardize_ignores_padding():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 1000.0]])
    z = standardize(x, MASK)
    vals = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    expected = (vals - 3.0) / vals.var(unbiased=False).sqrt()
    torch.testing.assert_close(z[MASK.bool()], expected, atol=1e-5, rtol=1e-5)
    assert z[1, 2].item() == 0.0


def test_running_moments_reward_normalisation():
    rm = RunningMoments()
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, -4.0])
    rm.update(a)
    rm.update(b)
    allx = torch.cat([a, b]).double()
    assert rm.mean == pytest.approx(allx.mean().item())
    assert rm.std == pytest.approx(allx.std(unbiased=False).item())
    z = rm.normalise(torch.tensor([100.0, 2.4]), clip=3.0)
    assert z[0].item() == 3.0                                           # clipped
    assert z[1].item() == pytest.approx((2.4 - rm.mean) / rm.std, rel=1e-5)
    restored = RunningMoments()
    restored.load_state_dict(rm.state_dict())
    assert restored.state_dict() == rm.state_dict()
    with pytest.raises(ValueError, match="non-empty"):
        rm.update(torch.tensor([]))


# ---- the trainer on the built-in tiny model ---------------------------------------------------------------

import copy  # noqa: E402

from bellman.llm.model import load_model  # noqa: E402
from bellman.llm.ppo import PPORLHFConfig, PPORLHFTrainer  # noqa: E402
from bellman.llm.reward_model import RewardModel, RewardModelConfig, RewardModelTrainer  # noqa: E402
from bellman.llm.sft import SFTConfig, SFTTrainer  # noqa: E402
from bellman.llm.tasks import Task, arithmetic_reward  # noqa: E402


def seven_task() -> Task:
    rows = [{"prompt": f"{i}?", "question": str(i), "answer": "7"} for i in range(40)]
    return Task("seven", train=rows[:32], test=rows[32:], accuracy=arithmetic_reward)


@pytest.fixture(scope="module")
def seven_rm():
    """A reward model that learnt to prefer the completion "7" (over other digits) on the training prompts."""
    model, tok = load_model("tiny", seed=0)
    pairs = [{"prompt": r["prompt"], "chosen": "7", "rejected": ["1", "77", "23", "777", "5", "70", "07"][i % 7]}
             for i, r in enumerate(seven_task().train)]
    rm = RewardModel.from_causal_lm(model, seed=0)
    RewardModelTrainer(rm, tok, pairs, RewardModelConfig(learning_rate=1e-3, total_steps=15, batch_size=16,
                                                         progress=False)).train()
    return rm


@pytest.fixture(scope="module")
def digit_policy():
    """The tiny model briefly taught to answer one digit and stop, so sampling finds "7" now and then."""
    model, tok = load_model("tiny", seed=0)
    rows = [{"prompt": f"{i}?", "completion": str(i * 3 % 10)} for i in range(32)]
    SFTTrainer(model, tok, seven_task(), SFTConfig(learning_rate=1e-3, total_steps=30, batch_size=16,
                                                   progress=False, eval_rows=1), rows=rows).train()
    return model, tok


def ppo_config(**kw) -> PPORLHFConfig:
    return PPORLHFConfig(**{"learning_rate": 1e-3, "batch_size": 16, "num_mini_batches": 2, "n_epochs": 2,
                            "max_new_tokens": 3, "temperature": 1.0, "kl_coef": 0.01, "eval_max_new_tokens": 4,
                            "progress": False, "seed": 0, **kw})


def test_ppo_learning_rate_schedule_scales_policy_and_critic_rates(seven_rm, digit_policy):
    model, tok = copy.deepcopy(digit_policy[0]), digit_policy[1]
    cfg = ppo_config(total_steps=4, lr_scheduler="linear", critic_learning_rate=4e-3)
    trainer = PPORLHFTrainer(model, tok, seven_task(), cfg, seven_rm)
    trainer.train(steps=3)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([1e-3 / 2, 4e-3 / 2])  # last update: step 2 of 4


def test_ppo_run_raises_reward_and_held_out_accuracy(seven_rm, digit_policy):
    model, tok = copy.deepcopy(digit_policy[0]), digit_policy[1]
    trainer = PPORLHFTrainer(model, tok, seven_task(), ppo_config(total_steps=15, seed=1), seven_rm)
    result = trainer.train()
    assert result["accuracy_before"] <= 0.25 and result["accuracy_after"] >= 0.75
    first, last = trainer.history[0], trainer.history[-1]
    assert last["reward"] > first["reward"] and last["accuracy"] > first["accuracy"]
    assert trainer.reward_moments.count == 15 * 16
    # the reward model stays frozen; the critic (its copy) trains
    assert not any(p.requires_grad for p in seven_rm.parameters())
    assert not torch.equal(trainer.critic.model.score.weight, seven_rm.model.score.weight)


def test_checkpoint_round_trip_continues_identically(seven_rm, digit_policy, tmp_path):
    base, tok = digit_policy
    cfg = ppo_config(total_steps=3, checkpoint_every=1, eval_rows=2, ptx_coef=0.1)
    straight = PPORLHFTrainer(copy.deepcopy(base), tok, seven_task(), cfg, seven_rm)
    straight.train()
    cfg_out = ppo_config(total_steps=3, checkpoint_every=1, eval_rows=2, ptx_coef=0.1, out=str(tmp_path))
    PPORLHFTrainer(copy.deepcopy(base), tok, seven_task(), cfg_out, seven_rm).train(steps=2)   # stops after 2
    resumed = PPORLHFTrainer(copy.deepcopy(base), tok, seven_task(), cfg_out, seven_rm)
    resumed.train(resume=True)                                                                # resumes at 2
    assert resumed.step == 3 and resumed.reward_moments.state_dict() == straight.reward_moments.state_dict()
    for a, b in zip(list(resumed.model.parameters()) + list(resumed.critic.parameters()),
                    list(straight.model.parameters()) + list(straight.critic.parameters())):
        torch.testing.assert_close(a, b)
    assert (tmp_path / "eval.json").exists() and (tmp_path / "model" / "config.json").exists()


def test_trainer_bad_inputs(seven_rm):
    model, tok = load_model("tiny", seed=0)
    with pytest.raises(ValueError, match="num_mini_batches"):
        PPORLHFConfig(batch_size=8, num_mini_batches=3)
    with pytest.raises(ValueError, match="clip_range"):
        PPORLHFConfig(clip_range=1.5)
    with pytest.raises(ValueError, match="gae_lambda"):
        PPORLHFConfig(gae_lambda=2.0)
    with pytest.raises(TypeError, match="RewardModel"):
        PPORLHFTrainer(model, tok, seven_task(), PPORLHFConfig(), model)
    with pytest.raises(TypeError, match="PPORLHFConfig"):
        PPORLHFTrainer(model, tok, seven_task(), RewardModelConfig(), seven_rm)
    rows = [{"prompt": "a", "question": "a", "numbers": [1], "target": 1}] * 2
    with pytest.raises(ValueError, match="answer"):
        PPORLHFTrainer(model, tok, Task("t", rows, rows, accuracy=arithmetic_reward), PPORLHFConfig(ptx_coef=1.0), seven_rm)


def test_pi_old_is_a_training_pass_so_sampler_rounding_enters_neither_ratio_nor_kl(seven_rm, digit_policy):
    """pi_old (in the ratio and the KL penalty) is the policy's own pass before the updates: the sampler's
    log-probs shifted by 0.5 nat give the same update; the logged gap is the shift."""
    runs = []
    for shift in (0.0, 0.5):
        model, tok = copy.deepcopy(digit_policy[0]), digit_policy[1]
        tr = PPORLHFTrainer(model, tok, seven_task(), ppo_config(total_steps=1), seven_rm)
        generate = tr.engine.generate

        def shifted(*a, _generate=generate, _shift=shift, **k):
            ro = _generate(*a, **k)
            ro.logprobs = ro.logprobs + _shift * ro.completion_mask
            return ro

        tr.engine.generate = shifted
        m = tr.train_step(0)
        runs.append((m, [p.detach().clone() for p in list(model.parameters()) + list(tr.critic.parameters())]))
    (m0, w0), (m1, w1) = runs
    assert m0["sampler_logprob_gap"] < 1e-5 and abs(m1["sampler_logprob_gap"] - 0.5) < 1e-5
    assert m1["kl"] == m0["kl"] and m1["clip_frac"] == m0["clip_frac"] and m1["policy_loss"] == m0["policy_loss"]
    assert all(torch.equal(a, b) for a, b in zip(w0, w1))
