"""The one entry point: `youtu <command> [config.toml] [positional ...] [--section.key=value ...]`.

    youtu run                                  # the whole recipe at toy scale (configs/tiny.toml)
    youtu train configs/small.toml --train.lr=3e-4
    youtu chat runs/tiny/sft --serve.max_new_tokens=256
    youtu train configs/tiny.toml --print-config

Each command is a thin call into one `main(cfg)` of its domain; this file holds no logic beyond
parsing. A new command is one `Command` entry in `COMMANDS`.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib
import importlib.resources
import logging
import os
import sys
import typing
from dataclasses import dataclass

from youtu.config import ConfigError, RunConfig, dump_toml, load_config
from youtu.errors import RunError
from youtu.fsutil import WriteFailed

DEFAULT_CONFIG = "configs/tiny.toml"
"""The config of a command given none: this path in the working directory (a checkout, where
it can be edited), else the copy installed with the package (`default_config`)."""


def default_config() -> str | None:
    """DEFAULT_CONFIG when the working directory has it, else the installed copy (package data:
    src/youtu/configs links to the checkout's configs/), so `youtu run` anywhere after a plain
    `pip install .` runs the same embedded default; None if neither exists."""
    if os.path.isfile(DEFAULT_CONFIG):
        return DEFAULT_CONFIG
    installed = importlib.resources.files("youtu") / DEFAULT_CONFIG
    return str(installed) if installed.is_file() else None


@dataclass(frozen=True)
class Command:
    target: str
    """'module:function' called with the resolved RunConfig."""
    help: str
    sections: tuple[str, ...] = ()
    """Config sections the command reads (shown by --help)."""
    positionals: tuple[str, ...] = ()
    """Dotted config keys filled by positional arguments, in order."""


COMMANDS: dict[str, Command] = {
    "run": Command("youtu.pipeline:main", "the whole recipe: synth -> tokenizer -> data -> "
                   "pretrain (with and without the agentic stage) -> SFT -> eval -> report",
                   ("model", "tokenizer", "data", "synth", "train", "sft", "eval")),
    "tokenizer train": Command("youtu.commands:tokenizer_train_main",
                               "train the multi-stage BPE tokenizer",
                               ("tokenizer", "data")),
    "tokenizer eval": Command("youtu.commands:tokenizer_eval_main",
                              "bytes/token per domain vs "
                              "reference tokenizers", ("tokenizer", "data")),
    "data prepare": Command("youtu.commands:data_prepare_main", "read, filter, dedup and "
                            "tokenize sources (+ youtu synth's trajectories) into token shards",
                            ("tokenizer", "data", "synth", "eval")),
    "data inspect": Command("youtu.data.inspect:main", "show the shard tree, counts and samples",
                            ("data", "train")),
    "synth": Command("youtu.agentic.synthesize:main", "synthesize verified agentic trajectories",
                     ("synth",)),
    "train": Command("youtu.commands:train_main", "curriculum pre-/mid-training (torchrun-ready)",
                     ("model", "data", "train")),
    "sft": Command("youtu.train.sft:main", "supervised fine-tuning with loss masks",
                   ("model", "data", "sft")),
    "rl": Command("youtu.rl.loop:main", "GRPO with verifiable rewards", ("rl",)),
    "eval": Command("youtu.eval.runner:main", "APTBench-format tasks, probes, general tasks, "
                    "report", ("eval",), ("eval.checkpoint",)),
    "serve": Command("youtu.serve.server:main", "OpenAI-compatible HTTP server", ("serve",),
                     ("serve.checkpoint",)),
    "chat": Command("youtu.serve.chat:main", "interactive terminal chat", ("serve",),
                    ("serve.checkpoint",)),
    "agent": Command("youtu.serve.agent:main", "run a task with tools in an agent loop",
                     ("serve",), ("serve.agent_task",)),
    "export": Command("youtu.model.export:export_main", "write a checkpoint as an HF folder "
                      "(youtu or deepseek_v3)", ("export",), ("export.checkpoint", "export.out")),
}


def _usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = [
        "usage: youtu <command> [config.toml] [args] [--section.key=value ...] [--print-config]",
        "",
        "Options are config keys: --section.key=value or --section.key value; a key that only",
        "one of the command's sections has may drop the section (youtu export --format deepseek_v3).",
        "",
        "commands:",
        *(f"  {name.ljust(width)}  {cmd.help}" for name, cmd in COMMANDS.items()),
        "",
        f"The config defaults to {DEFAULT_CONFIG} (the working directory's, else the one installed",
        "with youtu). `youtu <command> --help` lists the config keys the command reads.",
    ]
    return "\n".join(lines)


def _section_help(section: str) -> list[str]:
    cls = typing.get_type_hints(RunConfig)[section]
    lines = [f"  [{section}]"]
    default = cls()
    for f in dataclasses.fields(cls):
        value = getattr(default, f.name)
        shown = "{...}" if dataclasses.is_dataclass(value) else repr(value)
        if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            shown = f"[{len(value)} x {type(value[0]).__name__}]"
        lines.append(f"    --{section}.{f.name}={shown}")
    return lines


def _command_help(name: str, cmd: Command) -> str:
    pos = " ".join(f"<{p.split('.')[-1]}>" for p in cmd.positionals)
    lines = [f"usage: youtu {name} [config.toml] {pos} [--section.key=value ...] [--print-config]",
             "", cmd.help, "", "config keys (defaults; the TOML file and --overrides change them):"]
    lines += ["  --name, --out_dir, --seed, --device"]
    for section in cmd.sections:
        lines += _section_help(section)
    return "\n".join(lines)


def _split_command(argv: list[str]) -> tuple[str, list[str]]:
    if argv and argv[0] in {n.split()[0] for n in COMMANDS}:
        if len(argv) > 1 and f"{argv[0]} {argv[1]}" in COMMANDS:
            return f"{argv[0]} {argv[1]}", argv[2:]
        if argv[0] in COMMANDS:
            return argv[0], argv[1:]
        subs = [n.split()[1] for n in COMMANDS if n.split()[0] == argv[0]]
        raise ConfigError(f"'youtu {argv[0]}' needs a subcommand: {', '.join(subs)}")
    raise ConfigError(f"unknown command {argv[0]!r}; commands: {', '.join(COMMANDS)}")


def _setup_logging() -> None:
    rank = int(os.environ.get("RANK", "0"))
    level = logging.INFO if rank == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)


def parse(argv: list[str]) -> tuple[str, RunConfig, bool]:
    """argv (without the program name) -> (command name, resolved config, print_config)."""
    name, rest = _split_command(argv)
    cmd = COMMANDS[name]
    print_config = "--print-config" in rest
    rest = [a for a in rest if a != "--print-config"]
    rest = _join_option_values(rest)
    overrides = [_qualify(a, cmd) for a in rest if a.startswith("--")]
    positional = [a for a in rest if not a.startswith("--")]
    config_path = None
    if positional and positional[0].endswith(".toml"):
        config_path = positional.pop(0)
    else:
        config_path = default_config()
    if len(positional) > len(cmd.positionals):
        raise ConfigError(f"'youtu {name}' takes at most {len(cmd.positionals)} positional "
                          f"argument(s) ({', '.join(cmd.positionals) or 'none'}), got {positional}")
    overrides = [f"--{key}={_quote(value)}"
                 for key, value in zip(cmd.positionals, positional)] + overrides
    return name, load_config(config_path, overrides), print_config


def _join_option_values(args: list[str]) -> list[str]:
    """`--key value` -> `--key=value`; a bare `--key` (last, or before another option) ->
    `--key=true`, a switch."""
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and "=" not in arg:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                out.append(f"{arg}={args[i + 1]}")
                i += 2
                continue
            arg = f"{arg}=true"
        out.append(arg)
        i += 1
    return out


def _qualify(arg: str, cmd: Command) -> str:
    """`--format=x` -> `--export.format=x` when `format` is a key of exactly one of the
    command's sections and not a top-level key; anything else is returned unchanged."""
    key, _, value = arg[2:].partition("=")
    top = {f.name for f in dataclasses.fields(RunConfig)}
    if "." in key or key in top:
        return arg
    hints = typing.get_type_hints(RunConfig)
    owners = [section for section in cmd.sections
              if key in {f.name for f in dataclasses.fields(hints[section])}]
    if len(owners) > 1:
        raise ConfigError(f"--{key} is ambiguous here: say " + " or ".join(
            f"--{section}.{key}" for section in owners))
    return f"--{owners[0]}.{key}={value}" if owners else arg


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_FILE_ERRNOS = {errno.ENOSPC: "free space there or point the output at a larger disk",
                errno.EDQUOT: "free space there or point the output at a larger disk",
                errno.EROFS: "point the output at a writable folder",
                errno.EACCES: "check the file's permissions or point the output elsewhere",
                errno.EPERM: "check the file's permissions or point the output elsewhere",
                errno.EIO: "check the disk, or point the output elsewhere"}


def os_error_line(e: OSError) -> str | None:
    """One line for an OSError about a file (disk full, read-only, permissions, I/O), naming the
    file and the fix; None for other OSErrors (their traceback is the useful report)."""
    fix = _FILE_ERRNOS.get(e.errno)
    if fix is None or not e.filename:
        return None
    return f"{e.filename}: {e.strerror or e}; {fix}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    try:
        if "-h" in argv or "--help" in argv:
            name, _ = _split_command([a for a in argv if a not in ("-h", "--help")])
            print(_command_help(name, COMMANDS[name]))
            return 0
        name, cfg, print_config = parse(argv)
    except ConfigError as e:
        print(f"youtu: error: {e}", file=sys.stderr)
        return 2
    if print_config:
        print(dump_toml(cfg), end="")
        return 0
    _setup_logging()
    module_name, func_name = COMMANDS[name].target.split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as e:
        print(f"youtu: error: command '{name}' is not available in this install ({e})",
              file=sys.stderr)
        return 2
    try:
        result = func(cfg)
    except ConfigError as e:
        print(f"youtu: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, WriteFailed, RunError) as e:
        # Bad input found while running (a corrupt shard, a missing source file), a failed
        # write (disk full) or a dead worker: one line naming it; YOUTU_TRACEBACK=1 shows where
        # it was raised.
        if os.environ.get("YOUTU_TRACEBACK"):
            raise
        print(f"youtu: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        # A file write or read the OS refused anywhere else (a report plot on a full disk, a
        # read-only output folder): one line with the file and the fix, as for WriteFailed.
        line = os_error_line(e)
        if line is None or os.environ.get("YOUTU_TRACEBACK"):
            raise
        print(f"youtu: error: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        # A training run stopped by SIGTERM / SIGINT has checkpointed and says so (its exit
        # code is 128 + the signal: 143, 130); a bare Ctrl-C elsewhere is 130.
        print(f"youtu: {e or 'interrupted'}", file=sys.stderr)
        return getattr(e, "exit_code", 130)
    return int(result or 0)
