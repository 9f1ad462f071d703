"""Task environments with verifiers: `ENVIRONMENTS[name]` for math, code, tools, research."""

from __future__ import annotations

from youtu.agentic.envs.base import EVAL_SEED_MIN, Env, ToolError, extract_boxed
from youtu.agentic.envs.code import CodeEnv
from youtu.agentic.envs.math import MathEnv
from youtu.agentic.envs.research import ResearchEnv
from youtu.agentic.envs.tools import ToolsEnv

ENVIRONMENTS: dict[str, Env] = {
    "math": MathEnv(), "code": CodeEnv(), "tools": ToolsEnv(), "research": ResearchEnv()}

__all__ = ["ENVIRONMENTS", "EVAL_SEED_MIN", "Env", "ToolError", "extract_boxed"]
