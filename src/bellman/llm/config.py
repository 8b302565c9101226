"""Settings of the LLM trainers, in a module without torch so that the command line builds its options from
them (``bellman llm grpo --help``) without loading torch or transformers.

Each class's defaults are the published ones (cited per class); the preset "tiny" holds the settings the
built-in tiny model trains with, the ones ``bellman llm`` uses for it::

    GRPOConfig.preset("tiny", out="runs/grpo")     # learning_rate 1e-4, max_new_tokens 32
    GRPOConfig(out="runs/grpo")                    # DeepSeekMath / TRL defaults, for a real model

The trainer modules import their config from here (``from bellman.llm.grpo import GRPOConfig`` works too).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from bellman.core.config import Config, field
from bellman.llm.tasks import Task, arithmetic

LRScheduler = Literal["constant", "linear", "cosine"]
GRPOLossType = Literal["grpo", "dapo", "dr_grpo"]
DPOLossType = Literal["sigmoid", "ipo", "hinge"]
DraftKind = Literal["medusa", "mtp"]


@dataclasses.dataclass
class TrainerConfig(Config):
    """Fields every trainer shares. The learning rate warms up linearly over ``warmup_steps``, then stays
    constant or decays (linear / cosine) to 0 at ``total_steps`` (transformers' ``get_scheduler``)."""

    out: str | None = field(None, "output directory: metrics.csv, tb/, checkpoint.pt, model/, eval.json "
                                  "(None: keep everything in memory)")
    total_steps: int = field(100, "optimiser updates in the run")
    learning_rate: float = field(1e-5, "AdamW step size after warm-up")
    lr_scheduler: LRScheduler = field("constant", "the learning rate after warm-up: constant, or a linear / "
                                                  "cosine decay to 0 at total_steps")
    warmup_steps: int = field(0, "updates of linear learning-rate warm-up from 0")
    weight_decay: float = field(0.0, "AdamW weight decay")
    max_grad_norm: float = field(1.0, "clip the global gradient norm to this")
    seed: int = field(0, "seed of the model initialisation, batches and sampling")
    checkpoint_every: int = field(50, "write OUT/checkpoint.pt every this many updates (and at the end)")
    eval_rows: int = field(200, "held-out rows scored before and after training (0: all)")
    eval_max_new_tokens: int = field(32, "greedy tokens per held-out answer at most")
    eval_batch_size: int = field(64, "prompts per evaluation batch")
    progress: bool = field(True, "show a progress bar")
    chat_template: bool | None = field(None, "render each prompt as a user message with the tokenizer's chat "
                                             "template (None: when the tokenizer has one)")
    keep_freed_memory: bool = field(True, "on a CPU, let the C allocator keep freed memory for the next step "
                                          "(bellman.core.resources.keep_freed_memory: faster steps, the process "
                                          "keeps its peak memory; process-wide)")

    def check(self) -> None:
        for name in ("total_steps", "checkpoint_every", "eval_max_new_tokens", "eval_batch_size"):
            self.require(getattr(self, name) >= 1, name, "an int >= 1")
        self.require(self.eval_rows >= 0, "eval_rows", "an int >= 0 (0: all)")
        self.require(0 <= self.warmup_steps <= self.total_steps, "warmup_steps",
                     f"an int in [0, total_steps = {self.total_steps}]")
        self.require(self.learning_rate > 0, "learning_rate", "a float > 0")
        self.require(self.max_grad_norm > 0, "max_grad_norm", "a float > 0")


@dataclasses.dataclass
class SFTConfig(TrainerConfig):
    """SFT settings; lr 2e-5 is TRL's SFTConfig default for real models."""

    learning_rate: float = 2e-5
    batch_size: int = field(32, "rows per update")
    packing: bool = field(False, "pack each batch's sequences side by side into rows (best-fit decreasing) "
                                 "instead of padding each one")

    presets = {"tiny": dict(total_steps=500, learning_rate=1e-3)}

    def check(self) -> None:
        super().check()
        self.require(self.batch_size >= 1, "batch_size", "an int >= 1")


@dataclasses.dataclass
class GRPOConfig(TrainerConfig):
    """GRPO settings. Defaults: DeepSeekMath (lr 1e-6, beta 0.04, eps 0.2, one update per batch) and TRL
    (temperature 1.0, top_p 1.0, G = 8, eps 1e-4 in the std)."""

    learning_rate: float = 1e-6
    num_generations: int = field(8, "G: completions sampled per prompt (advantages are relative to the group)")
    prompts_per_step: int = field(8, "prompts per update: a batch of prompts_per_step x G completions")
    num_iterations: int = field(1, "mu: updates on each batch (pi_old fixed within them)")
    micro_batch_size: int = field(0, "completions per forward/backward pass (0: the whole batch)")
    beta: float = field(0.04, "weight of the k3 KL penalty to the reference (0: no reference model)")
    eps_low: float = field(0.2, "the ratio is clipped below at 1 - eps_low")
    eps_high: float = field(0.2, "the ratio is clipped above at 1 + eps_high (DAPO's clip-higher: 0.28)")
    loss_type: GRPOLossType = field("grpo", "loss aggregation: grpo (mean of per-completion token means), dapo "
                                            "(token sum / batch tokens), dr_grpo (token sum / (completions x "
                                            "max_new_tokens), no std division)")
    dynamic_sampling: bool = field(False, "DAPO: drop groups whose rewards are all equal and sample more")
    max_resample: int = field(3, "extra sampling rounds allowed by dynamic sampling")
    overlong_buffer: int = field(0, "DAPO soft overlong punishment over the last this many tokens before "
                                    "max_new_tokens (0: off)")
    overlong_penalty: float = field(1.0, "the overlong punishment at max_new_tokens and beyond")
    reward_weights: tuple[float, ...] | None = field(None, "weight of each reward function (None: 1 each)")
    temperature: float = field(1.0, "sampling temperature")
    top_p: float = field(1.0, "nucleus sampling mass (1: off)")
    top_k: int = field(0, "sample among the k most likely tokens (0: off)")
    max_new_tokens: int = field(64, "tokens sampled per completion at most")
    num_workers: int = field(0, "rollout workers on Ray (bellman.distributed), each with a copy of the policy, "
                                "sampling and scoring a share of the prompts; 0: sample in this process")
    ray_address: str | None = field(None, "the Ray cluster of the rollout workers: 'auto' or 'ray://host:port'; "
                                          "None: RAY_ADDRESS if set, else a local Ray with this machine's CPUs")
    max_staleness: int = field(0, "0: every batch sampled by the current weights; 1: the next batch samples "
                                  "while the learner updates (one update behind, importance-corrected)")
    speculative: bool = field(False, "sample with draft heads and exact speculative sampling (the policy's own "
                                     "samples and log-probs, fewer forward passes; bellman.llm.engine.speculative)")
    draft: str | None = field(None, "directory of trained draft heads (bellman llm draft); None: new heads of "
                                    "draft_kind, learnt from the rollouts")
    draft_kind: DraftKind = field("mtp", "kind of new draft heads: mtp or medusa")
    draft_heads: int = field(2, "K of new draft heads")
    draft_length: int | None = field(None, "drafts per decoding step (None: draft_heads; 0: plain decoding)")
    draft_auto: bool = field(False, "choose the drafts per step from the measured acceptance and the measured "
                                    "cost of a step at the batch size (timing-dependent: a run is then not "
                                    "bit-reproducible)")
    draft_refresh_every: int = field(1, "refresh the heads every this many updates, on the batch just sampled "
                                        "(they follow the drifting policy)")
    draft_refresh_steps: int = field(2, "distillation steps per refresh")
    draft_lr: float = field(1e-3, "AdamW step size of the draft heads")
    draft_vocab: int = field(4096, "draft vocabulary of heads without one, chosen at the first refresh from the "
                                   "policy's probabilities on that rollout (FR-Spec); 0: the whole vocabulary")

    presets = {"tiny": dict(learning_rate=1e-4, max_new_tokens=32)}

    def check(self) -> None:
        super().check()
        self.require(self.num_generations >= 2, "num_generations",
                     "an int >= 2 (advantages are relative to the group)")
        for name in ("prompts_per_step", "num_iterations", "max_new_tokens"):
            self.require(getattr(self, name) >= 1, name, "an int >= 1")
        self.require(self.micro_batch_size >= 0, "micro_batch_size", "an int >= 0 (0: the whole batch)")
        for name in ("beta", "eps_low", "eps_high"):
            self.require(getattr(self, name) >= 0, name, "a float >= 0")
        self.require(0 <= self.overlong_buffer < self.max_new_tokens, "overlong_buffer",
                     f"an int in [0, max_new_tokens = {self.max_new_tokens})")
        self.require(self.temperature > 0, "temperature", "a float > 0 (GRPO samples)")
        self.require(self.num_workers >= 0, "num_workers", "an int >= 0 (0: sample in this process)")
        self.require(self.max_staleness in (0, 1), "max_staleness", "0 (on-policy) or 1 (one update behind)")
        self.require(not self.max_staleness or self.num_workers >= 1, "max_staleness",
                     "0 without rollout workers (1 samples on them while the learner updates: set num_workers >= 1)")
        self.require(self.ray_address is None or self.ray_address.strip() != "", "ray_address",
                     "None, 'auto' or 'ray://host:port'")
        self.require(not self.speculative or self.num_workers == 0, "speculative",
                     "False with rollout workers (speculative decoding runs in this process: set num_workers 0)")
        self.require(self.draft_heads >= 1, "draft_heads", "an int >= 1")
        self.require(self.draft_length is None or 0 <= self.draft_length <= self.draft_heads, "draft_length",
                     f"None or an int in [0, draft_heads = {self.draft_heads}]")
        for name in ("draft_refresh_every", "draft_refresh_steps"):
            self.require(getattr(self, name) >= 1, name, "an int >= 1")
        self.require(self.draft_lr > 0, "draft_lr", "a float > 0")
        self.require(self.draft_vocab >= 0, "draft_vocab", "an int >= 0 (0: the whole vocabulary)")


@dataclasses.dataclass
class RewardModelConfig(TrainerConfig):
    """Reward-model training settings.

    learning_rate 9e-6 and batch 64 follow InstructGPT (Ouyang et al. 2022, appendix C.2), which trains a
    single epoch (total_steps ~ pairs / batch_size) as the reward model overfits otherwise; max_grad_norm
    1.0 as TRL's RewardConfig.
    """

    learning_rate: float = 9e-6
    batch_size: int = field(64, "preference pairs per update")

    presets = {"tiny": dict(total_steps=300, learning_rate=1e-4, batch_size=32)}

    def check(self) -> None:
        super().check()
        self.require(self.batch_size >= 1, "batch_size", "an int >= 1")


@dataclasses.dataclass
class PPORLHFConfig(TrainerConfig):
    """PPO (RLHF) settings. Defaults: TRL's PPOConfig (learning_rate 3e-6, num_ppo_epochs 4, kl_coef 0.05,
    cliprange 0.2, cliprange_value 0.2, vf_coef 0.1, gamma 1.0, lam 0.95, temperature 0.7, response length
    53); reward clip 10 from MOSS-RLHF's PPO-max (Zheng et al. 2023); ptx_coef 0 (InstructGPT's PPO-ptx
    uses 27.8 on its pretraining mix); max_grad_norm 1.0. The preset "tiny" is the setting that raised the
    tiny model's accuracy in benchmarks/llm_gains.py; a larger lr or a smaller kl_coef lets the policy
    over-optimise an imperfect reward model."""

    learning_rate: float = field(3e-6, "the policy's AdamW step size")
    critic_learning_rate: float | None = field(None, "the critic's step size (None: learning_rate)")
    batch_size: int = field(64, "prompts (one completion each) per rollout")
    n_epochs: int = field(4, "PPO passes over each rollout")
    num_mini_batches: int = field(1, "minibatches per pass (must divide batch_size)")
    kl_coef: float = field(0.05, "weight of the per-token KL penalty to the reference in the reward")
    clip_range: float = field(0.2, "epsilon of the clipped policy ratio")
    clip_range_vf: float | None = field(0.2, "clip the value to within this distance of the rollout's value "
                                             "(None: no value clipping)")
    vf_coef: float = field(0.1, "weight of the value loss")
    gamma: float = field(1.0, "discount over completion tokens")
    gae_lambda: float = field(0.95, "lambda of GAE")
    normalize_reward: bool = field(True, "normalise reward-model scores by their running mean and std (PPO-max)")
    reward_clip: float | None = field(10.0, "clip normalised scores to [-reward_clip, reward_clip] (None: off)")
    normalize_advantage: bool = field(True, "standardise advantages over each rollout")
    ptx_coef: float = field(0.0, "weight of the pretraining (SFT) loss mixed into each update (PPO-ptx)")
    temperature: float = field(0.7, "sampling temperature")
    max_new_tokens: int = field(53, "tokens sampled per completion at most")

    presets = {"tiny": dict(total_steps=40, learning_rate=1e-5, n_epochs=2, num_mini_batches=2, kl_coef=0.2,
                            temperature=1.0, max_new_tokens=16, eval_max_new_tokens=16)}

    def check(self) -> None:
        super().check()
        self.require(self.critic_learning_rate is None or self.critic_learning_rate > 0, "critic_learning_rate",
                     "a float > 0 or None")
        for name in ("batch_size", "n_epochs", "max_new_tokens"):
            self.require(getattr(self, name) >= 1, name, "an int >= 1")
        self.require(1 <= self.num_mini_batches <= self.batch_size and self.batch_size % self.num_mini_batches == 0,
                     "num_mini_batches", f"an int >= 1 dividing batch_size = {self.batch_size}")
        for name in ("kl_coef", "vf_coef", "ptx_coef"):
            self.require(getattr(self, name) >= 0, name, "a float >= 0")
        self.require(0 < self.clip_range < 1, "clip_range", "a float in (0, 1)")
        self.require(self.clip_range_vf is None or self.clip_range_vf > 0, "clip_range_vf", "a float > 0 or None")
        self.require(0 <= self.gamma <= 1, "gamma", "a float in [0, 1]")
        self.require(0 <= self.gae_lambda <= 1, "gae_lambda", "a float in [0, 1]")
        self.require(self.temperature > 0, "temperature", "a float > 0")
        self.require(self.reward_clip is None or self.reward_clip > 0, "reward_clip", "a float > 0 or None")


@dataclasses.dataclass
class DPOConfig(TrainerConfig):
    """DPO settings; defaults from Rafailov et al. 2023 (appendix B: beta 0.1, learning rate 1e-6, batch 64)
    and TRL's DPOConfig (max_grad_norm 1.0)."""

    learning_rate: float = 1e-6
    beta: float = field(0.1, "beta: the strength of the implicit KL constraint to the reference")
    loss_type: DPOLossType = field("sigmoid", "sigmoid (DPO), ipo (Azar et al.) or hinge (SLiC-HF)")
    batch_size: int = field(64, "preference pairs per update")
    share_prompt: bool = field(True, "run each prompt once for its chosen and rejected completion")

    presets = {"tiny": dict(learning_rate=3e-5, batch_size=32, eval_max_new_tokens=16)}

    def check(self) -> None:
        super().check()
        self.require(self.beta > 0, "beta", "a float > 0")
        self.require(self.batch_size >= 1, "batch_size", "an int >= 1")


@dataclasses.dataclass
class SamplingConfig(Config):
    """Sampling settings; temperature 0 means greedy. top_k 0 and top_p 1.0 switch those filters off. The
    preset "tiny" is the short sampling of the tiny model's answers (preference pairs of `bellman llm`)."""

    temperature: float = field(1.0, "sampling temperature (0: greedy)")
    top_p: float = field(1.0, "nucleus sampling mass (1: off)")
    top_k: int = field(0, "sample among the k most likely tokens (0: off)")
    max_new_tokens: int = field(64, "tokens sampled per completion at most")
    use_cache: bool = field(True, "decode with a KV cache")

    presets = {"tiny": dict(max_new_tokens=16)}

    def check(self) -> None:
        self.require(self.temperature >= 0, "temperature", "a float >= 0 (0: greedy)")
        self.require(0 < self.top_p <= 1, "top_p", "a float in (0, 1]")
        self.require(self.top_k >= 0, "top_k", "an int >= 0 (0: off)")
        self.require(self.max_new_tokens >= 1, "max_new_tokens", "an int >= 1")


@dataclasses.dataclass
class DraftConfig(Config):
    """Draft heads for self-speculative decoding (``bellman.llm.draft``), trained with the trunk frozen by
    self-distillation on the policy's own samples. Defaults: Medusa-1's lr 1e-3 (Cai et al. 2024, sec. 3)."""

    kind: DraftKind = field("mtp", "medusa: parallel heads on the last hidden state; mtp: DeepSeek-V3's "
                                   "sequential multi-token-prediction modules")
    heads: int = field(2, "K: draft heads (tokens drafted per step at most)")
    total_steps: int = field(200, "distillation updates")
    learning_rate: float = field(1e-3, "AdamW step size of the heads")
    batch_size: int = field(16, "sampled sequences per update")
    samples: int = field(256, "prompts the policy completes once (cycled if fewer): the sequences the heads "
                              "learn on, the trunk run over them once")
    vocab: int = field(4096, "draft vocabulary: the tokens of largest probability under the policy on its "
                             "samples (FR-Spec); 0: the whole vocabulary")
    max_new_tokens: int = field(32, "tokens the policy samples per prompt")
    temperature: float = field(1.0, "temperature of the policy's samples the heads learn on")
    seed: int = field(0, "seed of the prompts drawn and the samples")

    presets = {"tiny": dict(total_steps=300, learning_rate=3e-3)}

    def check(self) -> None:
        for name in ("heads", "total_steps", "batch_size", "samples", "max_new_tokens"):
            self.require(getattr(self, name) >= 1, name, "an int >= 1")
        self.require(self.vocab >= 0, "vocab", "an int >= 0 (0: the whole vocabulary)")
        self.require(self.learning_rate > 0, "learning_rate", "a float > 0")
        self.require(self.temperature > 0, "temperature", "a float > 0")


@dataclasses.dataclass
class R1ZeroConfig(Config):
    """The whole R1-Zero recipe on the tiny model. GRPO settings follow DeepSeekMath / DAPO (k3 KL with beta
    0.04, clip-higher 0.28, token-level "dapo" aggregation) with a learning rate and group size for a
    sub-million-parameter model; the KL term keeps the base model's arithmetic while the format is learnt."""

    seed: int = field(0, "seed of the task, the base model and both stages")
    n_train: int = field(5000, "training problems")
    n_test: int = field(200, "held-out problems")
    base_model: str = field("tiny", "tiny: pretrain the built-in model on the base corpus first; or the "
                                    "directory of a base model")
    pretrain_steps: int = field(1000, "base pretraining steps (base_model tiny)")
    pretrain_lr: float = field(3e-3, "peak learning rate of base pretraining")
    pretrain_warmup_steps: int = field(50, "warm-up steps of base pretraining")
    pretrain_batch_size: int = field(64, "documents per base pretraining step")
    n_generic: int = field(6000, "generic documents in the base corpus")
    grpo: GRPOConfig = field(default_factory=lambda: GRPOConfig(
        learning_rate=1e-4, num_generations=8, prompts_per_step=8, beta=0.04, eps_low=0.2, eps_high=0.28,
        loss_type="dapo", temperature=1.0, max_new_tokens=80, total_steps=30, eval_rows=200,
        eval_max_new_tokens=80, checkpoint_every=10), help="the GRPO stage (its out and seed come from the run)")

    def task(self) -> Task:
        """The recipe's task: 2-3 digit addition, ``n_train`` / ``n_test`` problems drawn with ``seed``."""
        return arithmetic(digits=(2, 3), op="+", n_train=self.n_train, n_test=self.n_test, seed=self.seed)
