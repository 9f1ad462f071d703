"""Terminal chat: `youtu chat <checkpoint>` streams replies as they are generated.

    youtu chat runs/tiny/sft
    youtu chat runs/tiny/sft --serve.tools='["python"]' --serve.enable_thinking=false
    printf 'hello\\n/think\\nhi again\\n' | youtu chat runs/tiny/sft       # scripted

Commands: /think (toggle thinking; /think on|off), /reset (forget the conversation), /help,
/quit (or end of input). Reasoning is shown as `[thinking] ...` before the answer. With tools
configured (`serve.tools`: python, search; the env tools need `youtu agent`), tool calls are
executed and their results fed back until the model answers without calling a tool (at most
`MAX_TOOL_ROUNDS` rounds per message).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

from youtu.errors import ConfigError
from youtu.serve.client import ChatBackend, EngineChat
from youtu.serve.protocol import APIError
from youtu.serve.tools import ToolSet

if TYPE_CHECKING:
    from youtu.config import RunConfig

MAX_TOOL_ROUNDS = 8
HELP = "commands: /think [on|off]  /reset  /help  /quit"


class _Printer:
    """Writes streamed text, marking where reasoning starts and ends."""

    def __init__(self, out: TextIO):
        self.out, self.kind = out, ""
        self.dim = out.isatty()

    def __call__(self, kind: str, text: str) -> None:
        if kind != self.kind:
            if self.kind == "reasoning":
                self.out.write("\033[0m\n" if self.dim else "\n")
            if kind == "reasoning":
                self.out.write("\033[2m[thinking] " if self.dim else "[thinking] ")
            self.kind = kind
        self.out.write(text)
        self.out.flush()

    def end(self) -> None:
        if self.kind == "reasoning" and self.dim:
            self.out.write("\033[0m")
        self.out.write("\n")
        self.kind = ""


def run_chat(backend: ChatBackend, *, tools: ToolSet | None = None, thinking: bool = True,
             max_tokens: int = 1024, system: str = "", stdin: TextIO | None = None,
             stdout: TextIO | None = None) -> list[dict[str, Any]]:
    """Read user lines from `stdin` until /quit or EOF; stream replies to `stdout` (default:
    the process's, looked up at call time).

    Returns:
        The conversation as it stands at the end (after the last /reset).
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout

    def fresh() -> list[dict[str, Any]]:
        return [{"role": "system", "content": system}] if system else []

    messages = fresh()
    printer = _Printer(stdout)
    tool_names = ", ".join(tools.tools) if tools and tools.tools else "none"
    stdout.write(f"youtu chat ({backend.model}; thinking {'on' if thinking else 'off'}; "
                 f"tools: {tool_names}). {HELP}\n")
    while True:
        stdout.write("you> ")
        stdout.flush()
        line = stdin.readline()
        if not line:
            stdout.write("\n")
            break
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            cmd, _, arg = line.partition(" ")
            if cmd in ("/quit", "/exit"):
                break
            if cmd == "/reset":
                messages = fresh()
                stdout.write("(conversation cleared)\n")
            elif cmd == "/think":
                thinking = {"on": True, "off": False}.get(arg.strip(), not thinking)
                stdout.write(f"(thinking {'on' if thinking else 'off'})\n")
            elif cmd == "/help":
                stdout.write(HELP + "\n")
            else:
                stdout.write(f"unknown command {cmd}; {HELP}\n")
            continue
        messages.append({"role": "user", "content": line})
        for _ in range(MAX_TOOL_ROUNDS):
            stdout.write("assistant> ")
            try:
                reply = backend.complete(messages, tools=tools.schemas if tools else None,
                                         max_tokens=max_tokens, thinking=thinking, on_text=printer)
            except APIError as e:
                printer.end()
                stdout.write(f"error: {e.message}\n")
                messages.pop()
                break
            printer.end()
            msg = {**reply.message, "content": reply.message.get("content") or ""}
            messages.append(msg)
            if reply.finish_reason == "length":
                stdout.write("(reply cut at the token limit)\n")
            calls = msg.get("tool_calls") or []
            if not calls or tools is None:
                break
            for call in calls:
                fn = call["function"]
                result = tools.call(fn["name"], fn["arguments"])
                shown = result if len(result) <= 300 else result[:300] + " ..."
                stdout.write(f"[tool {fn['name']}({fn['arguments']})]\n{shown}\n")
                messages.append({"role": "tool", "tool_call_id": call["id"], "name": fn["name"],
                                 "content": result})
    return messages


def main(cfg: RunConfig) -> int:
    """`youtu chat`: load the checkpoint in-process and chat on the terminal."""
    from youtu.serve.agent import build_tools
    from youtu.serve.engine import engine_from_config

    s = cfg.serve
    if "env" in s.tools:
        raise ConfigError("serve.tools: the 'env' tools act on an environment's generated task, "
                          "which `youtu chat` does not run (serve.agent_env is read by `youtu "
                          "agent` only); chat offers 'python' and 'search', or run `youtu agent "
                          "--serve.agent_env=<name>`")
    try:
        tools = build_tools(s.tools, docs=s.docs) if s.tools else None
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(str(e)) from e
    engine, tok = engine_from_config(cfg.serve, run_dir=cfg.run_dir, device=cfg.device,
                                     seed=cfg.seed)
    backend = EngineChat(engine, tok, temperature=s.temperature, top_p=s.top_p, seed=cfg.seed,
                         model=s.checkpoint or "local")
    run_chat(backend, tools=tools, thinking=s.enable_thinking, max_tokens=s.max_new_tokens)
    return 0
