"""`youtu rl` end to end on CPU: learning on a verifiable task, the sampler/trainer log-prob
check through the real engine, resume, fp16 loss scaling, config errors."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from youtu import cli
from youtu.config import ConfigError, load_config
from youtu.model import ModelConfig, YoutuForCausalLM
from youtu.model.hf import load_pretrained, save_pretrained
from youtu.serve.engine import Engine, SamplingParams
from youtu.tokenizer.chat import encode_chat
from youtu.tokenizer.train import train_from_texts
from youtu.train import parallel
from youtu.train.metrics import read_metrics
from youtu.rl.loop import check_mismatch, rl, rl_schedule
from youtu.rl.policy import Policy, update
from youtu.rl.envs import DigitAddEnv
from youtu.rl.loss import group_advantages
from youtu.rl.rollout import collate, rollout


def tiny_config(vocab_size: int) -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=192,
                       num_hidden_layers=2, num_attention_heads=4, q_lora_rank=32,
                       kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
                       max_position_embeddings=2048, rope_theta=1e4,
                       bos_token_id=vocab_size - 256, eos_token_id=vocab_size - 255,
                       pad_token_id=vocab_size - 255)


def format_warmup(model, tok, steps: int = 60, seed: int = 0) -> None:
    """Brief SFT that teaches the answer FORMAT of digit_add (one digit, then EOS) with random
    digits, not the answers: the policy starts at chance (~1/10) and only RL can do better."""
    env, rng = DigitAddEnv(), random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        rows = []
        for _ in range(32):
            task = env.generate(rng.randrange(10**6))
            messages = [{"role": "user", "content": task.prompt},
                        {"role": "assistant", "content": str(rng.randint(0, 9))}]
            rows.append(encode_chat(tok, messages, enable_thinking=False))
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), tok.pad_id)
        targets = torch.full((len(rows), width), -100)
        for b, (row, mask) in enumerate(rows):
            ids[b, :len(row)] = torch.tensor(row)
            keep = torch.tensor(mask[1:]).bool()
            targets[b, :len(row) - 1] = torch.where(keep, torch.tensor(row[1:]), -100)
        logits = model(ids)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.view(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    """An SFT'd tiny policy for digit_add, as a checkpoint folder (weights + tokenizer)."""
    torch.manual_seed(0)
    texts = [f"{a}+{b}={a + b}. The sum of {a} and {b}. " for a in range(20) for b in range(20)]
    tok = train_from_texts(texts * 2, 1024)
    model = YoutuForCausalLM(tiny_config(tok.vocab_size))
    model.init_weights()
    format_warmup(model, tok)
    folder = tmp_path_factory.mktemp("policy")
    save_pretrained(model, folder)
    tok.save(folder)
    return folder


def rl_args(out: Path, policy_dir: Path, *overrides: str) -> list[str]:
    """`youtu rl` arguments of the digit_add runs (run folder: <out>/tiny/rl)."""
    return [f"--out_dir={out}", "--device=cpu", f"--rl.init={policy_dir}", "--rl.env=digit_add",
            "--rl.rewards={env = 1.0}", "--rl.lr=1e-3", "--rl.prompts_per_step=16",
            "--rl.group_size=8", "--rl.max_new_tokens=2", "--rl.max_seq_len=64",
            "--rl.enable_thinking=false", "--rl.eval_tasks=64", "--rl.rollout_batch=128",
            "--rl.tensorboard=false", "--rl.grad_clip=1.0", *overrides]


def rl_config(out: Path, policy_dir: Path, *overrides: str):
    return load_config(None, rl_args(out, policy_dir, *overrides))


def run_rl(cfg, init: Path, out: Path) -> Path:
    """`rl()` on the `[rl]` section of a run config, as `youtu rl` calls it."""
    return rl(cfg.rl, init, out, seed=cfg.seed, device=cfg.device, record=cfg)


def _metric_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _load_tok(folder):
    from youtu.tokenizer import Tokenizer

    return Tokenizer.load(folder)


def test_youtu_rl_raises_heldout_reward_on_digit_add(tmp_path, policy_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/tiny.toml here: only the arguments below count
    args = rl_args(tmp_path, policy_dir, "--rl.steps=100", "--rl.eval_every=20")
    assert cli.main(["rl", *args]) == 0
    run = tmp_path / "tiny" / "rl"
    curve = read_metrics(run / "metrics.jsonl", "eval/rl/reward")
    print("held-out reward curve", curve)
    assert sorted(curve) == [0, 20, 40, 60, 80, 100]
    # The SFT'd policy answers with a random digit (greedy: one fixed digit, ~0-0.2 right);
    # 100 rounds of GRPO took it to 0.48-0.83 over 7 seeds/settings (2026-11-29 sweep).
    assert curve[100] >= curve[0] + 0.3, curve  # a clear rise over the starting policy
    train = read_metrics(run / "metrics.jsonl", "rl/reward")
    first, last = (sum(train[s] for s in r) / 10 for r in (range(1, 11), range(91, 101)))
    assert last >= first + 0.2, (first, last)
    mismatch = read_metrics(run / "metrics.jsonl", "rl/mismatch/mean_abs")
    assert max(mismatch.values()) < 1e-4  # the engine sampled from the policy being trained
    entropy = read_metrics(run / "metrics.jsonl", "rl/entropy")
    assert 0 < entropy[100] < entropy[1] <= 2.4  # ~ln(10)/2 at the start: uniform digit + EOS
    final = run / "stage_rl"
    assert (final / "model.safetensors").is_file() and (final / "tokenizer.json").is_file()
    assert load_pretrained(final).config.vocab_size == 1024


def test_fsdp_two_processes_match_one(tmp_path, policy_dir, monkeypatch):
    """torchrun, 2 gloo processes, FSDP2 policy + unsharded rollout copies: the same episodes,
    rewards and (up to reduction order) weights as one process."""
    monkeypatch.chdir(tmp_path)
    args = ("--rl.steps=3", "--rl.prompts_per_step=8", "--rl.group_size=4", "--rl.eval_tasks=8")
    assert cli.main(["rl", *rl_args(tmp_path / "one", policy_dir, *args)]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "youtu", "rl", *rl_args(tmp_path / "two", policy_dir, *args)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    one, two = tmp_path / "one" / "tiny" / "rl", tmp_path / "two" / "tiny" / "rl"
    for key in ("rl/reward", "rl/completion_tokens", "eval/rl/reward"):
        assert read_metrics(two / "metrics.jsonl", key) == read_metrics(one / "metrics.jsonl", key)
    assert max(read_metrics(two / "metrics.jsonl", "rl/mismatch/mean_abs").values()) < 1e-4
    a = load_pretrained(one / "stage_rl").state_dict()
    b = load_pretrained(two / "stage_rl").state_dict()
    # Reduction order differs between one process and two (and between AVX2 and AVX-512
    # hosts): measured up to 1.5e-6 on 1 of 65,536 elements. One AdamW step at lr 1e-3 moves
    # a weight by ~1e-3, so 2e-5 still fails on any gradient that is actually wrong.
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=2e-5)


def test_fsdp_fp16_overflow_skips_the_step_on_every_rank(tmp_path, policy_dir):
    """fp16 under FSDP2: a loss scale of 1e38 overflows; the sharded scaler all-reduces the
    overflow flag, so every rank skips (weights stay those of the start) and halves the scale."""
    args = rl_args(tmp_path, policy_dir, "--rl.steps=3", "--rl.prompts_per_step=8",
                   "--rl.group_size=4", "--rl.eval_tasks=0", "--rl.precision=fp16",
                   "--rl.loss_scale_init=1e38")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "youtu", "rl", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = tmp_path / "tiny" / "rl"
    scales = read_metrics(run / "metrics.jsonl", "rl/loss_scale")
    gnorms = read_metrics(run / "metrics.jsonl", "rl/gnorm")
    overflowed = [s for s in scales if s not in gnorms]  # a non-finite norm is logged as null
    assert overflowed, gnorms  # the test needs at least one overflowing round
    for s in overflowed:
        assert scales[s] == pytest.approx(scales.get(s - 1, 1e38) / 2, rel=1e-6)
    a, b = load_pretrained(run / "stage_rl").state_dict(), load_pretrained(policy_dir).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)


def _episodes(policy_dir, sample_temperature):
    tok = _load_tok(policy_dir)
    model = load_pretrained(policy_dir)
    # Sharpen the logits so a wrong temperature visibly moves the log-probs.
    with torch.no_grad():
        model.model.norm.weight.mul_(4.0)
    engine = Engine(model, max_batch=64, max_seq_len=64, eos_ids=[tok.eos_id])
    env = DigitAddEnv()
    eps = rollout(engine, tok, env, [env.generate(s) for s in range(8)], group_size=4,
                  params=SamplingParams(temperature=sample_temperature, max_tokens=6),
                  max_seq_len=64, enable_thinking=False, seed=1)
    rewards = torch.tensor([float(i % 2) for i in range(len(eps))])
    return model, tok, collate(eps, group_advantages(rewards, 4), tok.pad_id)


@pytest.mark.parametrize("sample_temperature,flagged", [(1.0, False), (0.6, True)])
def test_logprob_check_catches_a_mismatched_sampler(tmp_path, policy_dir, sample_temperature,
                                                   flagged):
    """The engine samples at `sample_temperature` while training assumes rl.temperature=1: the
    recomputed log-probs then disagree with the recorded ones and the round is flagged."""
    model, tok, batch = _episodes(policy_dir, sample_temperature)
    cfg = rl_config(tmp_path, policy_dir, "--rl.temperature=1.0", "--rl.mismatch_action=raise")
    policy = Policy(model, cfg.rl, parallel.Dist())
    metrics = update(policy.root, None, policy.optimizer, None, batch, cfg.rl, dist=parallel.Dist(),
                     dtype=None, schedule=rl_schedule(cfg.rl, 1),
                     first_opt_step=0, round_seed=0)
    if flagged:
        assert metrics["rl/mismatch/mean_abs"] > cfg.rl.mismatch_threshold
        with pytest.raises(RuntimeError, match="log-prob mismatch"):
            check_mismatch(metrics, cfg.rl, 1)
    else:
        assert metrics["rl/mismatch/mean_abs"] < 1e-4
        assert metrics["rl/mismatch/ratio_max"] == pytest.approx(1.0, abs=1e-3)
        check_mismatch(metrics, cfg.rl, 1)


def test_sampler_logprobs_as_ratio_denominator_also_checks_mismatch(tmp_path, policy_dir):
    model, tok, batch = _episodes(policy_dir, 0.6)
    cfg = rl_config(tmp_path, policy_dir, "--rl.old_logprobs=sampler")
    policy = Policy(model, cfg.rl, parallel.Dist())
    metrics = update(policy.root, None, policy.optimizer, None, batch, cfg.rl, dist=parallel.Dist(),
                     dtype=None, schedule=rl_schedule(cfg.rl, 1),
                     first_opt_step=0, round_seed=0)
    assert metrics["rl/mismatch/mean_abs"] > cfg.rl.mismatch_threshold
    assert metrics["rl/ratio_max"] > 1.0 + cfg.rl.clip_high  # far off-policy ratios


def test_several_minibatches_move_the_ratio_and_kl(tmp_path, policy_dir):
    model, tok, batch = _episodes(policy_dir, 1.0)
    cfg = rl_config(tmp_path, policy_dir, "--rl.minibatches=4", "--rl.epochs=2",
                    "--rl.kl_coef=0.1", "--rl.lr=1e-2", "--rl.micro_batch_tokens=128")
    policy = Policy(model, cfg.rl, parallel.Dist())
    before = [p.detach().clone() for p in model.parameters()]
    metrics = update(policy.root, policy.ref, policy.optimizer, None, batch, cfg.rl,
                     dist=parallel.Dist(), dtype=None, schedule=rl_schedule(cfg.rl, 1),
                     first_opt_step=0, round_seed=0)
    assert metrics["rl/kl"] > 0 and metrics["rl/ratio_max"] > 1.0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(not p.requires_grad for p in policy.ref.parameters())


def test_rollouts_sample_from_a_compute_dtype_copy_refreshed_each_round(tmp_path, policy_dir):
    """The engine's model is a frozen copy cast once to the compute dtype (bf16 here), not the
    fp32 master weights under autocast; refresh_sampler copies an update into it in place."""
    from youtu.model.hf import load_pretrained

    model = load_pretrained(policy_dir, dtype=torch.float32)
    cfg = rl_config(tmp_path, policy_dir, "--rl.precision=bf16")
    policy = Policy(model, cfg.rl, parallel.Dist())
    assert policy.sampler is not model and not any(p.requires_grad for p in policy.sampler.parameters())
    assert {p.dtype for p in policy.sampler.parameters()} == {torch.bfloat16}
    storage = policy.sampler.model.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        model.model.embed_tokens.weight.add_(1.0)
    policy.refresh_sampler()
    assert policy.sampler.model.embed_tokens.weight.data_ptr() == storage  # graphs keep reading it
    torch.testing.assert_close(policy.sampler.model.embed_tokens.weight.float(),
                               model.model.embed_tokens.weight, rtol=1e-2, atol=1e-2)
    with pytest.raises(ValueError, match="rollout_cache_fraction"):
        rl_config(tmp_path, policy_dir, "--rl.rollout_cache_fraction=1.5")


def test_resume_continues_exactly(tmp_path, policy_dir):
    common = ("--rl.steps=4", "--rl.eval_tasks=0", "--rl.prompts_per_step=4",
              "--rl.group_size=4", "--rl.checkpoint_every=2")
    straight = run_rl(rl_config(tmp_path / "a", policy_dir, *common), policy_dir, tmp_path / "a")
    half = run_rl(rl_config(tmp_path / "b", policy_dir, *common, "--rl.stop_after=2"), policy_dir,
              tmp_path / "b")
    assert half.name == "step_00000002"
    with pytest.raises(ConfigError, match="rl.resume"):  # the trainer's run-folder rule
        run_rl(rl_config(tmp_path / "b", policy_dir, *common, "--rl.resume=false"), policy_dir,
               tmp_path / "b")
    resumed = run_rl(rl_config(tmp_path / "b", policy_dir, *common), policy_dir, tmp_path / "b")
    a, b = load_pretrained(straight).state_dict(), load_pretrained(resumed).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    init = load_pretrained(policy_dir).state_dict()
    assert not torch.equal(a["lm_head.weight"], init["lm_head.weight"])  # it did train


def test_fp16_trains_with_loss_scaling(tmp_path, policy_dir):
    cfg = rl_config(tmp_path, policy_dir, "--rl.steps=2", "--rl.eval_tasks=0",
                    "--rl.precision=fp16", "--rl.prompts_per_step=4", "--rl.loss_scale_init=1024")
    run_rl(cfg, policy_dir, tmp_path / "rl")
    rows = _metric_rows(tmp_path / "rl")
    assert all(r["rl/loss_scale"] == 1024.0 for r in rows)
    # fp16 rollouts and fp16 training agree far better than the fp32/fp16 gap would allow.
    assert all(r["rl/mismatch/mean_abs"] < 5e-3 for r in rows)
    state = torch.load(tmp_path / "rl" / "stage_rl" / "trainer_state.pt", weights_only=False)
    assert state["scaler"]["scale"] == 1024.0


def test_shipped_tiny_rl_section_runs_on_the_math_env_with_tools(tmp_path, policy_dir):
    """configs/tiny.toml's [rl] (math environment, env + format rewards) for one round, with
    the environment's tools offered (max_turns=2): real prompts, system prompt and verifier."""
    tiny = Path(__file__).resolve().parents[2] / "configs" / "tiny.toml"
    cfg = load_config(tiny, [f"--out_dir={tmp_path}", "--device=cpu", f"--rl.init={policy_dir}",
                             "--rl.steps=1", "--rl.prompts_per_step=2", "--rl.group_size=2",
                             "--rl.max_new_tokens=8", "--rl.eval_tasks=2", "--rl.max_turns=2",
                             "--rl.max_seq_len=1536",
                             "--rl.tensorboard=false"])
    assert cfg.rl.env == "math" and set(cfg.rl.rewards) == {"env", "format_think"}
    final = run_rl(cfg, policy_dir, tmp_path / "rl")
    rows = _metric_rows(tmp_path / "rl")
    assert {"eval/rl/reward", "eval/rl/env", "eval/rl/format_think"} <= set(rows[0])
    assert rows[1]["rl/reward"] == 0.0  # a digit_add policy does not solve math
    assert rows[1]["rl/mismatch/mean_abs"] < 1e-4
    assert (final / "model.safetensors").is_file()


def test_custom_reward_module_from_the_command_line(tmp_path, policy_dir, monkeypatch):
    """`youtu rl --rl.reward_modules='["pkg.mod"]' --rl.rewards='{mine = 1.0}'`: the module is
    imported before the weights are checked, and its reward scores the episodes."""
    from youtu.rl import rewards

    monkeypatch.setattr(rewards, "REWARDS", dict(rewards.REWARDS))
    pkg = tmp_path / "src" / "my_rl_rewards"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "custom.py").write_text(
        "from youtu.rl.rewards import register_reward\n\n\n"
        "@register_reward('three_eighths')\n"
        "def three_eighths(sample):\n"
        "    return 0.375 if sample.completion is not None else 0.0\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    for name in ("my_rl_rewards", "my_rl_rewards.custom"):
        monkeypatch.delitem(sys.modules, name, raising=False)  # dropped again after the test
    monkeypatch.chdir(tmp_path)
    args = rl_args(tmp_path, policy_dir, "--rl.steps=1", "--rl.prompts_per_step=4",
                   "--rl.group_size=2", "--rl.eval_tasks=0",
                   '--rl.reward_modules=["my_rl_rewards.custom"]',
                   "--rl.rewards={three_eighths = 2.0}")
    assert cli.main(["rl", *args]) == 0
    (row,) = _metric_rows(tmp_path / "tiny" / "rl")
    assert row["rl/reward/three_eighths"] == 0.375 and row["rl/reward"] == 0.75


def test_config_errors_name_the_fix(tmp_path, policy_dir):
    with pytest.raises(ConfigError, match="unknown reward 'nope'.*rl.reward_modules"):
        run_rl(rl_config(tmp_path, policy_dir, "--rl.rewards={nope = 1.0}"), policy_dir, tmp_path)
    with pytest.raises(ConfigError, match="cannot import 'no_such_rewards_mod'.*PYTHONPATH"):
        run_rl(rl_config(tmp_path, policy_dir, '--rl.reward_modules=["no_such_rewards_mod"]'),
           policy_dir, tmp_path)
    with pytest.raises(ConfigError, match="unknown environment"):
        run_rl(rl_config(tmp_path, policy_dir, "--rl.env=chess"), policy_dir, tmp_path)
    with pytest.raises(ConfigError, match="minibatches"):
        rl_config(tmp_path, policy_dir, "--rl.minibatches=3")
    with pytest.raises(ConfigError, match="temperature"):
        rl_config(tmp_path, policy_dir, "--rl.temperature=0")
    with pytest.raises(ConfigError, match="not a model folder"):
        run_rl(rl_config(tmp_path, policy_dir), tmp_path / "missing", tmp_path)


@pytest.mark.gpu
def test_rl_on_cuda_samples_from_the_refreshed_graphed_copy(tmp_path, policy_dir):
    """On CUDA the rollouts replay CUDA graphs over the bf16 sampler copy: each round's
    refresh must reach the graphs (in-place copies), or the sampler's log-probs drift from the
    trainer's after the first update (lr 1e-2 moves the tiny policy far in one step)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cfg = rl_config(tmp_path, policy_dir, "--device=cuda", "--rl.precision=bf16", "--rl.steps=3",
                    "--rl.lr=1e-2", "--rl.eval_tasks=0", "--rl.mismatch_action=raise",
                    "--rl.mismatch_threshold=0.05")
    run_rl(cfg, policy_dir, tmp_path / "rl")
    rows = [r for r in _metric_rows(tmp_path / "rl") if "rl/mismatch/mean_abs" in r]
    assert len(rows) == 3 and max(r["rl/mismatch/mean_abs"] for r in rows) < 0.05
