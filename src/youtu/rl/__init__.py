"""RL with verifiable rewards (GRPO) on the trainer's core: `youtu rl`.

loop.py (the rounds, `rl()`, `main`), policy.py (the trained policy and its update), loss.py
(advantages, log-probs, the clipped surrogate), rollout.py (episodes through `serve.engine`),
envs.py, rewards.py (the reward registry), config.py (`RLConfig`). Sits above train, serve and
agentic (DESIGN.md's layering table).
"""
