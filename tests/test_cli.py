"""CLI: help, per-command help, --print-config, errors, from a real subprocess too."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from youtu.cli import COMMANDS, main, parse
from youtu.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_command_help(capsys):
    for name in COMMANDS:
        assert main([*name.split(), "--help"]) == 0
        assert f"usage: youtu {name}" in capsys.readouterr().out


def test_every_command_target_is_a_main_of_its_domain():
    import importlib

    for name, cmd in COMMANDS.items():
        module, func = cmd.target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name
        assert func == "main" or func.endswith("_main"), f"{name}: {cmd.target}"


def test_print_config_resolves_overrides(capsys):
    assert main(["train", str(ROOT / "configs/tiny.toml"), "--model.kv_lora_rank=48",
                 "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "kv_lora_rank = 48" in out and 'name = "tiny"' in out


def test_positionals_fill_config_keys():
    name, cfg, _ = parse(["export", str(ROOT / "configs/tiny.toml"), "ckpt/dir", "out/dir",
                          "--export.format=deepseek_v3"])
    assert name == "export"
    assert (cfg.export.checkpoint, cfg.export.out, cfg.export.format) == (
        "ckpt/dir", "out/dir", "deepseek_v3")


def test_space_separated_values_short_keys_and_switches():
    _, cfg, _ = parse(["export", "ckpt/dir", "out/dir", "--format", "deepseek_v3"])
    assert cfg.export.format == "deepseek_v3"
    _, cfg, _ = parse(["train", "--train.lr", "0.01", "--max_steps=7", "--train.compile"])
    assert (cfg.train.lr, cfg.train.max_steps, cfg.train.compile) == (0.01, 7, True)
    _, cfg, _ = parse(["train", "--name", "x"])  # a top-level key stays top-level
    assert cfg.name == "x"
    with pytest.raises(ConfigError, match="--lr is ambiguous here: say --train.lr or --sft.lr"):
        parse(["run", "--lr=1"])


def test_bad_input_while_running_is_one_line(capsys, monkeypatch):
    import youtu.model.export

    def fail(cfg):
        raise ValueError("shard_00003.bin is truncated; run `youtu data prepare` again")

    monkeypatch.setattr(youtu.model.export, "export_main", fail)
    monkeypatch.delenv("YOUTU_TRACEBACK", raising=False)
    assert main(["export", "a", "b"]) == 1
    err = capsys.readouterr().err
    # one line, as a ConfigError prints (issue 18: it was two)
    assert err == "youtu: error: shard_00003.bin is truncated; run `youtu data prepare` again\n"
    monkeypatch.setenv("YOUTU_TRACEBACK", "1")
    with pytest.raises(ValueError, match="truncated"):
        main(["export", "a", "b"])


def test_a_refused_file_write_anywhere_is_one_line(capsys, monkeypatch, tmp_path):
    # Writes outside checkpoints / shards / metrics (a report plot on a full disk) printed a
    # traceback (issue 18's remaining caveat).
    import errno

    import youtu.model.export

    plot = tmp_path / "report" / "loss.png"

    def full(cfg):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(plot))

    monkeypatch.setattr(youtu.model.export, "export_main", full)
    monkeypatch.delenv("YOUTU_TRACEBACK", raising=False)
    assert main(["export", "a", "b"]) == 1
    assert capsys.readouterr().err == (f"youtu: error: {plot}: No space left on device; free "
                                       "space there or point the output at a larger disk\n")

    def refused(cfg):
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")

    monkeypatch.setattr(youtu.model.export, "export_main", refused)
    with pytest.raises(ConnectionRefusedError):  # not about a file: the traceback stays
        main(["export", "a", "b"])


def test_errors_are_clear(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert main(["tokenizer"]) == 2
    assert "needs a subcommand" in capsys.readouterr().err
    assert main(["train", "--model.nope=1"]) == 2
    assert "unknown config key 'model.nope'" in capsys.readouterr().err


def test_console_script_runs():
    exe = Path(sys.executable).parent / "youtu"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "youtu"]
    out = subprocess.run([*cmd, "train", "--print-config"], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "[model]" in out.stdout


def test_a_command_outside_a_checkout_takes_the_installed_default_config(tmp_path, monkeypatch):
    """No config given and no configs/tiny.toml in the working directory (a plain install run
    elsewhere): the copy installed with the package, not the dataclass defaults (a 2B model
    beside a 4k tokenizer, which `youtu run` refused a minute in)."""
    from youtu.cli import default_config
    from youtu.model import ModelConfig

    monkeypatch.chdir(tmp_path)
    name, cfg, _ = parse(["run"])
    assert (name, cfg.name, cfg.model) == ("run", "tiny", ModelConfig.tiny())
    assert Path(default_config()).read_text() == (ROOT / "configs/tiny.toml").read_text()
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs/tiny.toml").write_text('name = "mine"\n')
    assert parse(["run"])[1].name == "mine"  # the working directory's file comes first
