"""youtu.agentic: verified agentic trajectories for mid-training, SFT and RL.

    youtu synth configs/tiny.toml            # scripted teachers, all four environments

- `trajectory`: the JSONL schema (task with gold steps and near-misses, OpenAI messages,
  Agentic-CoT phases, outcome, provenance), validation, `load_trajectories`.
- `render`: mid-training text and SFT conversations; importers (OpenAI, Hermes, ReAct).
- `sandbox` (+ `sandbox_guest`): limited, isolated processes for untrusted code.
- `envs`: math, code, tools and research environments with verifiers (`ENVIRONMENTS`).
- `teachers`: scripted teachers with controlled mistakes; `llm_teacher`: any OpenAI-compatible
  endpoint, rejection-sampled by the verifiers.
- `synthesize`: the `youtu synth` command (parallel, resumable, deduplicated, with stats).
"""
