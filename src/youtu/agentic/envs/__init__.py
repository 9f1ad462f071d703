"""Task environments with verifiers: `ENVIRONMENTS[name]` for math, code, tools, research and the
real-content ones: swe (issue fixing over standard-library code) and pydocs (research over the
API documentation of the standard library and the installed packages)."""

from __future__ import annotations

from youtu.agentic.envs.base import EVAL_SEED_MIN, Env, ToolError, extract_boxed
from youtu.agentic.envs.code import CodeEnv
from youtu.agentic.envs.math import MathEnv
from youtu.agentic.envs.pydocs import PyDocsEnv
from youtu.agentic.envs.research import ResearchEnv
from youtu.agentic.envs.swe import SWEEnv
from youtu.agentic.envs.tools import ToolsEnv

ENVIRONMENTS: dict[str, Env] = {
    "math": MathEnv(), "code": CodeEnv(), "tools": ToolsEnv(), "research": ResearchEnv(),
    "swe": SWEEnv(), "pydocs": PyDocsEnv()}
REAL_CONTENT = ("swe", "pydocs")
"""Environments over real content: the standard library's code and its documentation."""

__all__ = ["ENVIRONMENTS", "REAL_CONTENT", "EVAL_SEED_MIN", "Env", "ToolError", "extract_boxed"]
