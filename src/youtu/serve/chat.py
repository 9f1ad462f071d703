"""Terminal chat: `youtu chat <checkpoint>` streams replies as they are generated.

    youtu chat runs/tiny/sft
    youtu chat runs/tiny/sft --serve.tools='["python"]' --serve.enable_thinking=false
    printf 'hello\\n/think\\nhi again\\n' | youtu chat runs/tiny/sft       # scripted

Commands: /think (toggle thinking; /think on|off), /reset (forget the conversation), /help,
/quit (or end of input, Ctrl-D). On a terminal the prompt has readline line editing and a
history kept in ~/.youtu_chat_history; Ctrl-C stops the reply being generated (what came so far
stays in the conversation) and never ends the session. Reasoning is shown as
`[thinking] ...` before the answer. With tools
configured (`serve.tools`: python, search; the env tools need `youtu agent`), tool calls are
executed and their results fed back until the model answers without calling a tool (at most
`MAX_TOOL_ROUNDS` rounds per message).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from youtu.errors import ConfigError
from youtu.serve.client import ChatBackend, EngineChat
from youtu.serve.protocol import APIError
from youtu.serve.tools import ToolSet

if TYPE_CHECKING:
    from youtu.config import RunConfig

MAX_TOOL_ROUNDS = 8
HELP = "commands: /think [on|off]  /reset  /help  /quit   (Ctrl-C stops a reply)"
HISTORY_FILE = "~/.youtu_chat_history"
HISTORY_LINES = 1000


def _line_reader(stdin: TextIO, stdout: TextIO) -> tuple[Callable[[str], str | None],
                                                         Callable[[], None]]:
    """(read(prompt) -> line or None at end of input, close()). On the process's terminal
    `input()` with readline (editing, history file); otherwise plain lines from `stdin`."""
    if stdin is sys.stdin and stdin.isatty():
        history = Path(os.path.expanduser(HISTORY_FILE))
        try:
            import readline
        except ImportError:  # no readline on this platform: input() still works
            readline = None  # type: ignore[assignment]
        if readline is not None:
            readline.set_history_length(HISTORY_LINES)
            try:
                readline.read_history_file(history)
            except OSError:
                pass  # first session, or an unreadable file: start empty

        def read_tty(prompt: str) -> str | None:
            try:
                return input(prompt)
            except EOFError:
                return None

        def close() -> None:
            if readline is not None:
                try:
                    readline.write_history_file(history)
                except OSError:
                    pass  # a read-only home must not fail the chat
        return read_tty, close

    def read(prompt: str) -> str | None:
        stdout.write(prompt)
        stdout.flush()
        line = stdin.readline()
        return line or None
    return read, lambda: None


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
    read, close = _line_reader(stdin, stdout)
    try:
        while True:
            try:
                line = read("you> ")
            except KeyboardInterrupt:
                stdout.write("\n(Ctrl-C stops a reply; /quit or Ctrl-D leaves)\n")
                continue
            if line is None:
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
            try:
                _answer(backend, messages, tools, max_tokens, thinking, printer, stdout)
            except KeyboardInterrupt:  # outside the backend (a tool, the printer): stop the turn
                printer.end()
                stdout.write("(stopped)\n")
                if messages[-1]["role"] == "user":
                    messages.pop()
    finally:
        close()
    return messages


def _answer(backend: ChatBackend, messages: list[dict[str, Any]], tools: ToolSet | None,
            max_tokens: int, thinking: bool, printer: _Printer, stdout: TextIO) -> None:
    """One user turn: replies and tool rounds, appended to `messages`."""
    for _ in range(MAX_TOOL_ROUNDS):
        stdout.write("assistant> ")
        try:
            reply = backend.complete(messages, tools=tools.schemas if tools else None,
                                     max_tokens=max_tokens, thinking=thinking, on_text=printer)
        except APIError as e:
            printer.end()
            stdout.write(f"error: {e.message}\n")
            messages.pop()
            return
        printer.end()
        msg = {**reply.message, "content": reply.message.get("content") or ""}
        if reply.finish_reason == "abort":  # Ctrl-C: keep the text so far, run no tool call
            msg.pop("tool_calls", None)
            if msg["content"] or msg.get("reasoning_content"):
                messages.append(msg)
            else:
                messages.pop()
            stdout.write("(stopped)\n")
            return
        messages.append(msg)
        if reply.finish_reason == "length":
            stdout.write("(reply cut at the token limit)\n")
        calls = msg.get("tool_calls") or []
        if not calls or tools is None:
            return
        for call in calls:
            fn = call["function"]
            result = tools.call(fn["name"], fn["arguments"])
            shown = result if len(result) <= 300 else result[:300] + " ..."
            stdout.write(f"[tool {fn['name']}({fn['arguments']})]\n{shown}\n")
            messages.append({"role": "tool", "tool_call_id": call["id"], "name": fn["name"],
                             "content": result})


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
    # Steps run on the engine's own thread, so Ctrl-C lands in this one between steps (never
    # inside a forward) and only cancels the reply.
    engine.start()
    try:
        run_chat(backend, tools=tools, thinking=s.enable_thinking, max_tokens=s.max_new_tokens)
    finally:
        engine.shutdown()
    return 0
