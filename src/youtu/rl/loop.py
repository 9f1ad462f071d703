"""`youtu rl`: GRPO-style RL with verifiable rewards, rollouts through the serving engine.

    youtu rl configs/tiny.toml --rl.env=digit_add --rl.init=runs/tiny/sft/stage_sft
    torchrun --nproc-per-node 8 -m youtu rl configs/youtu-2b.toml --rl.env=math

One round (`rl.steps` of them):
1. draw `prompts_per_step` training tasks from the environment (seeds < 1,000,000);
2. sample `group_size` episodes per task with `youtu.serve.engine.Engine` - the serving sampler,
   token in / token out, log-probs recorded at sampling time; with `max_turns > 1` the policy's
   tool calls run in the environment and the results join the episode (masked from the loss);
3. score each episode with the reward registry (`youtu.rl.rewards`), take group-relative
   advantages (`loss.group_advantages`);
4. recompute the episode log-probs with the training forward, compare them with the sampler's
   (`loss.logprob_mismatch`: a gap above `mismatch_threshold` means the rollouts did not come
   from the policy being trained) and run `epochs x minibatches` clipped-ratio updates
   (`policy.update` over `loss.policy_loss`, optional k3 KL to the frozen initial policy);
5. log `rl/...` metrics, checkpoint, and every `eval_every` rounds score held-out tasks
   (seeds >= 1,000,000) as `eval/rl/reward`.

Precision (`rl.precision`): fp32; bf16 or fp16 autocast over fp32 master weights for training;
rollouts sample from a copy of the policy cast once to the same dtype and refreshed from the
trained weights every round (its cache in that dtype too, capped by `rl.rollout_cache_fraction`
of the free GPU memory; CUDA graphs on CUDA); fp16 adds dynamic loss scaling
(`torch.amp.GradScaler`). The update runs the trainer's step pieces (`youtu.train.trainer`:
precision rule, optimizer, FSDP2 root, clip + step). Under torchrun the policy is sharded with
FSDP2 and each rank samples its share of the tasks with its copy, refreshed from the shards. Checkpoints, metrics and resume are the trainer's (`train.checkpoint`,
`train.metrics`): an interrupted run continues from its newest checkpoint exactly.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from youtu.errors import ConfigError
from youtu.rl.envs import HELDOUT_SEED, get_env, task_seed
from youtu.rl.loss import group_advantages
from youtu.rl.policy import Policy, update
from youtu.rl.rewards import get_reward, load_reward_modules, score
from youtu.rl.rollout import Episode, collate, rollout
from youtu.train import checkpoint as ckpt
from youtu.train import parallel, runfolder
from youtu.train.metrics import MetricsSink, human_count, human_duration
from youtu.train.schedule import WSD

if TYPE_CHECKING:
    from youtu.config import RunConfig
    from youtu.rl.config import RLConfig

logger = logging.getLogger(__name__)

STAGE = "rl"
"""Stage name in checkpoints and the final checkpoint folder (`stage_rl`)."""


# ---------------------------------------------------------------------------------------------
# rewards


def score_episodes(episodes: list[Episode], env: Any, env_name: str,
                   weights: dict[str, float]) -> torch.Tensor:
    """Fill each episode's reward and reward terms; return the rewards as a [N] tensor."""
    for ep in episodes:
        ep.reward, ep.reward_terms = score(ep.reward_input(env, env_name), weights)
    return torch.tensor([ep.reward for ep in episodes], dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# held-out evaluation


def evaluate_policy(sampler: Any, tok: Any, env: Any, rl: RLConfig, weights: dict[str, float], *,
                    dist: parallel.Dist, device: torch.device) -> dict[str, float]:
    """Mean reward (and each reward term) on `rl.eval_tasks` held-out tasks, one episode each,
    sampled at `rl.eval_temperature` (0 = greedy). Each rank scores its share; the means are
    over all of them."""
    from youtu.serve.engine import SamplingParams

    if rl.eval_tasks == 0:
        return {}
    per_rank = -(-rl.eval_tasks // dist.world_size)
    first = min(dist.rank * per_rank, rl.eval_tasks)
    tasks = [env.generate(HELDOUT_SEED + i, rl.difficulty)
             for i in range(first, min(first + per_rank, rl.eval_tasks))]
    params = SamplingParams(temperature=rl.eval_temperature, max_tokens=rl.max_new_tokens)
    episodes = rollout(sampler, tok, env, tasks, group_size=1, params=params,
                       max_turns=rl.max_turns, max_seq_len=rl.max_seq_len,
                       enable_thinking=rl.enable_thinking, seed=HELDOUT_SEED,
                       system_prompt=rl.system_prompt, index_offset=first)
    score_episodes(episodes, env, rl.env, weights)
    names = sorted(weights)
    sums = torch.tensor([float(len(episodes)), sum(ep.reward for ep in episodes),
                         *(sum(ep.reward_terms[n] for ep in episodes) for n in names)],
                        dtype=torch.float64, device=device)
    sums = dist.all_reduce_sum(sums).cpu()
    n = max(float(sums[0]), 1.0)
    out = {"eval/rl/reward": float(sums[1]) / n}
    out.update({f"eval/rl/{name}": float(sums[2 + i]) / n for i, name in enumerate(names)})
    return out


# ---------------------------------------------------------------------------------------------
# the run


def round_metrics(episodes: list[Episode], rewards: torch.Tensor, group_size: int,
                  weights: dict[str, float], dist: parallel.Dist,
                  device: torch.device) -> dict[str, float]:
    """Reward and episode statistics of one round, averaged over all ranks."""
    names = sorted(weights)
    groups = rewards.view(-1, group_size)
    local = [
        float(len(episodes)), float(rewards.sum()), float((rewards ** 2).sum()),
        float(sum(ep.completion_tokens for ep in episodes)),
        float(sum(ep.truncated for ep in episodes)),
        float(sum(len(ep.turns) for ep in episodes)),
        float(groups.shape[0]), float((groups.max(1).values == groups.min(1).values).sum()),
        -sum(lp for ep in episodes for lp, m in zip(ep.sampler_logprobs, ep.loss_mask) if m),
        *(sum(ep.reward_terms[n] for ep in episodes) for n in names),
    ]
    s = dist.all_reduce_sum(torch.tensor(local, dtype=torch.float64, device=device)).cpu().tolist()
    n, mean = max(s[0], 1.0), s[1] / max(s[0], 1.0)
    out = {
        "rl/reward": mean,
        "rl/reward_std": max(s[2] / n - mean ** 2, 0.0) ** 0.5,
        "rl/completion_tokens": s[3] / n,
        "rl/truncated": s[4] / n,
        "rl/turns": s[5] / n,
        "rl/flat_groups": s[7] / max(s[6], 1.0),
        # Mean -log p of the policy's own samples: an unbiased estimate of its per-token entropy
        # (at the sampling temperature); a fall towards 0 is the policy collapsing.
        "rl/entropy": s[8] / max(s[3], 1.0),
        "rl/sampled_tokens": s[3],
    }
    out.update({f"rl/reward/{name}": s[9 + i] / n for i, name in enumerate(names)})
    return out


def round_line(step: int, total: int, m: dict[str, float], eta_s: float) -> str:
    """One fixed-format log line per round."""
    parts = [f"step {step}/{total}", f"reward {m['rl/reward']:.3f}"]
    if "eval/rl/reward" in m:
        parts.append(f"eval {m['eval/rl/reward']:.3f}")
    parts += [f"loss {m['rl/loss']:+.4f}", f"kl {m['rl/kl']:.4f}",
              f"clip {100 * m['rl/clip_frac']:.1f}%", f"mismatch {m['rl/mismatch/mean_abs']:.1e}",
              f"entropy {m['rl/entropy']:.3f}",
              f"len {m['rl/completion_tokens']:.0f}", f"gnorm {m['rl/gnorm']:.2f}",
              f"lr {m['rl/lr']:.1e}", f"tok/s {human_count(m['rl/tokens_per_s'])}",
              f"eta {human_duration(eta_s)}"]
    return " | ".join(parts)


def default_init(run_dir: Path) -> Path:
    """The policy `youtu rl` starts from when `rl.init` is empty: `youtu sft`'s newest
    checkpoint in the run folder."""
    found = ckpt.latest_checkpoint(run_dir / "sft")
    if found is None:
        raise ConfigError(f"no SFT checkpoint under {run_dir / 'sft'}: run `youtu sft` first "
                          "or name a policy with --rl.init=<checkpoint folder>")
    return found


class RLRun:
    """One `youtu rl` invocation: the policy, the engine sampling from it, the environment,
    the metrics sink and the checkpoints of `out_dir`; `round(step)` is one round."""

    def __init__(self, cfg: RLConfig, init_checkpoint: Path, out_dir: Path, *, seed: int,
                 dist: parallel.Dist, record: object | None):
        from youtu.serve.engine import Engine, SamplingParams, cache_budget_bytes
        from youtu.tokenizer import Tokenizer

        self.cfg, self.init, self.out_dir, self.seed, self.dist = (cfg, init_checkpoint, out_dir,
                                                                   seed, dist)
        self.record = record
        load_reward_modules(cfg.reward_modules)  # they register rewards the weights may name
        try:
            self.env = get_env(cfg.env)
            for name in cfg.rewards:
                get_reward(name)
        except ValueError as e:
            raise ConfigError(str(e)) from e
        if cfg.prompts_per_step % dist.world_size:
            raise ConfigError(f"rl.prompts_per_step ({cfg.prompts_per_step}) must be a multiple "
                              f"of the number of processes ({dist.world_size})")
        torch.manual_seed(seed)
        self.tok = Tokenizer.load(init_checkpoint)
        self.policy = Policy.load(init_checkpoint, cfg, dist)
        self.per_rank = cfg.prompts_per_step // dist.world_size
        budget = (cache_budget_bytes(dist.device, cfg.rollout_cache_fraction)
                  if cfg.rollout_cache_fraction else 0)
        self.engine = Engine(self.policy.sampler, max_batch=cfg.rollout_batch,
                             max_seq_len=cfg.max_seq_len, eos_ids=[self.tok.eos_id],
                             cache_memory_bytes=budget,
                             detokenize=self.tok.decode, seed=seed,
                             max_queue=max(self.per_rank * cfg.group_size, cfg.eval_tasks) + 1)
        self.params = SamplingParams(temperature=cfg.temperature, max_tokens=cfg.max_new_tokens)
        self.weights = dict(cfg.rewards)
        self.rounds = min(cfg.steps, cfg.max_steps or cfg.steps)
        self.schedule = rl_schedule(cfg, self.rounds)
        self.sink = MetricsSink(out_dir, enabled=dist.is_main, tensorboard=cfg.tensorboard)

    def resume(self) -> int:
        """Restore the newest loadable checkpoint of `out_dir` (the trainer's rule,
        `train.runfolder.resume_from`); the round to start at."""
        if self.dist.is_main:
            ckpt.clean_temp(self.out_dir)
        latest = runfolder.resume_from(self.out_dir, resume=self.cfg.resume, dist=self.dist,
                                       setting="rl.resume")
        if latest is None:
            return 0
        policy = self.policy
        shared, _ = ckpt.restore_checkpoint(latest, model=policy.model, root=policy.root,
                                            optimizer=policy.optimizer, dist=self.dist)
        if policy.scaler is not None and shared.get("scaler"):
            policy.scaler.load_state_dict(shared["scaler"])
        logger.info("resumed RL from %s at round %d", latest, int(shared["step"]))
        return int(shared["step"])

    def save(self, name: str, step: int) -> Path:
        """Checkpoint after `step` rounds (collective)."""
        policy = self.policy
        scaler = policy.scaler.state_dict() if policy.scaler is not None else None
        path = ckpt.save_checkpoint(
            self.out_dir, name, model=policy.model, root=policy.root, optimizer=policy.optimizer,
            dist=self.dist, state={"step": step, "stage": STAGE, "scaler": scaler},
            rank_state={"rng": ckpt.rng_state()}, run_cfg=self.record, tokenizer_dir=self.init,
            keep_last=self.cfg.keep_last)
        logger.info("checkpoint %s (round %d)", path, step)
        return path

    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out reward after `step` rounds, logged."""
        self.policy.refresh_sampler()
        scores = evaluate_policy(self.engine, self.tok, self.env, self.cfg, self.weights,
                                 dist=self.dist, device=self.dist.device)
        if scores:
            self.sink.log(step, scores)
            logger.info("held-out reward at round %d: %.3f (%d tasks)", step,
                        scores["eval/rl/reward"], self.cfg.eval_tasks)
        return scores

    def round(self, step: int) -> dict[str, float]:
        """Round `step` (0-based): rollouts, rewards, advantages, the update; its metrics."""
        cfg, dist, policy, device = self.cfg, self.dist, self.policy, self.dist.device
        t0 = time.perf_counter()
        policy.refresh_sampler()
        tasks = [self.env.generate(task_seed(self.seed, step, dist.rank * self.per_rank + i,
                                             cfg.prompts_per_step), cfg.difficulty)
                 for i in range(self.per_rank)]
        # no autocast: the sampler copy is already in the compute dtype
        episodes = rollout(self.engine, self.tok, self.env, tasks, group_size=cfg.group_size,
                           params=self.params, max_turns=cfg.max_turns,
                           max_seq_len=cfg.max_seq_len, enable_thinking=cfg.enable_thinking,
                           seed=self.seed, step=step, system_prompt=cfg.system_prompt,
                           index_offset=dist.rank * self.per_rank * cfg.group_size)
        rewards = score_episodes(episodes, self.env, cfg.env, self.weights)
        advantages = group_advantages(rewards, cfg.group_size, normalize_std=cfg.normalize_std)
        batch = collate(episodes, advantages, self.tok.pad_id).to(device)
        t1 = time.perf_counter()
        policy.root.train()
        metrics = update(policy.root, policy.ref, policy.optimizer, policy.scaler, batch, cfg,
                         dist=dist, dtype=policy.amp, schedule=self.schedule,
                         first_opt_step=step * cfg.epochs * cfg.minibatches,
                         round_seed=self.seed * 100_003 + step)
        t2 = time.perf_counter()
        metrics.update(round_metrics(episodes, rewards, cfg.group_size, self.weights, dist,
                                     device))
        metrics.update({"rl/time/rollout_s": t1 - t0, "rl/time/update_s": t2 - t1,
                        "rl/tokens_per_s": metrics["rl/sampled_tokens"] / max(t2 - t0, 1e-9)})
        check_mismatch(metrics, cfg, step + 1)
        return metrics


def rl(cfg: RLConfig, init_checkpoint: str | Path, out_dir: str | Path, *, seed: int = 0,
       device: str = "auto", record: object | None = None) -> Path:
    """Run GRPO from the policy in `init_checkpoint`, writing checkpoints and metrics to `out_dir`.

    Resumes from the newest checkpoint in `out_dir` when `rl.resume` (the default).

    Args:
        cfg: the `[rl]` section.
        init_checkpoint: an HF model folder with tokenizer files (the SFT checkpoint).
        out_dir: checkpoints and metrics.
        seed: the run's seed (tasks, sampling, minibatch order).
        device: 'auto', 'cpu', 'cuda', ... (`youtu.model.device.resolve_device`).
        record: the config written as run.toml beside every checkpoint (the command passes the
            resolved run config); None = none.

    Returns:
        The final checkpoint folder (`<out_dir>/stage_rl`), an HF model folder with tokenizer;
        with `stop_after`, the checkpoint this invocation stopped at.
    """
    init_checkpoint, out_dir = Path(init_checkpoint), Path(out_dir)
    if not (init_checkpoint / "config.json").is_file():
        raise ConfigError(f"rl.init: {init_checkpoint} is not a model folder (no config.json)")
    dist = parallel.init_distributed(device)
    runfolder.lock(out_dir, dist)  # one run per folder: a second one stops here
    try:
        return _run(RLRun(cfg, init_checkpoint, out_dir, seed=seed, dist=dist, record=record))
    finally:
        runfolder.unlock(out_dir, dist)


def _run(run: RLRun) -> Path:
    """The rounds of `run` from where its folder left off; the last checkpoint written."""
    cfg, out_dir = run.cfg, run.out_dir
    start = run.resume()
    final_name = ckpt.stage_dirname(STAGE)
    if start >= run.rounds and (out_dir / final_name).is_dir():
        run.sink.close()
        return out_dir / final_name
    last = min(run.rounds, cfg.stop_after or run.rounds)
    if start == 0:
        run.evaluate(0)
    t_start = time.perf_counter()
    for step in range(start, last):
        metrics = run.round(step)
        done = step + 1
        if cfg.eval_every and done % cfg.eval_every == 0 and done < last:
            metrics.update(run.evaluate(done))
        if done % cfg.log_every == 0 or done == last:
            run.sink.log(done, metrics)
            eta = (time.perf_counter() - t_start) / (done - start) * (last - done)
            logger.info(round_line(done, run.rounds, metrics, eta))
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < last:
            run.save(ckpt.step_dirname(done), done)
    if last < run.rounds:  # stop_after ended this invocation early: a checkpoint to resume from
        path = run.save(ckpt.step_dirname(last), last)
    else:
        run.evaluate(last)
        path = run.save(final_name, last)
    run.sink.close()
    return path


def rl_schedule(rl: RLConfig, rounds: int) -> WSD:
    """LR per optimizer step: warmup, constant, then a decay over the last `decay_fraction` of
    the steps (none by default). A run shrunk by `max_steps` shrinks its warmup alike."""
    total = rounds * rl.epochs * rl.minibatches
    warmup = round(rl.warmup_steps * rounds / rl.steps)
    decay_steps = round(rl.decay_fraction * total)
    return WSD(peak_lr=rl.lr, warmup_steps=warmup, decay_start=total - decay_steps,
               decay_end=total, decay=rl.decay, min_lr_ratio=rl.min_lr_ratio)


def check_mismatch(metrics: dict[str, float], rl: RLConfig, round_index: int) -> None:
    """Warn (or raise, per `rl.mismatch_action`) when the round's mean |log p_train -
    log p_sampler| exceeds `rl.mismatch_threshold`."""
    gap = metrics["rl/mismatch/mean_abs"]
    if gap <= rl.mismatch_threshold:
        return
    message = (f"round {round_index}: rollout/training log-prob mismatch {gap:.3g} nats per token "
               f"(max {metrics['rl/mismatch/max_abs']:.3g}) exceeds rl.mismatch_threshold="
               f"{rl.mismatch_threshold}: the episodes were not sampled from the policy being "
               "trained (temperature, truncation, precision or stale weights)")
    if rl.mismatch_action == "raise":
        raise RuntimeError(message)
    logger.warning(message)


def main(cfg: RunConfig) -> int:
    """`youtu rl`: GRPO from `rl.init` (default: the run's SFT checkpoint) into `<run_dir>/rl`."""
    init = Path(cfg.rl.init) if cfg.rl.init else default_init(cfg.run_dir)
    dist = parallel.init_distributed(cfg.device)
    try:
        path = rl(cfg.rl, init, cfg.run_dir / "rl", seed=cfg.seed, device=cfg.device, record=cfg)
    finally:
        parallel.shutdown(dist)
    logger.info("RL policy written to %s", path)
    return 0
