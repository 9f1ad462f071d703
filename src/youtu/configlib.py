"""The config library: dataclass trees <-> dicts and TOML, dotted CLI overrides, hashing.

    cfg = from_dict(ModelConfig, {"kv_lora_rank": 256})
    print(dump_toml(cfg)); config_hash(cfg)

Every key is checked against the dataclass it lands in: an unknown key or a value of the wrong
type raises `ConfigError` naming the dotted key, what was given and what is valid. This module
sits below every domain and imports nothing of ours but `errors`; the assembly of the sections
into one `RunConfig` lives in `youtu.config`, above them all.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import tomli_w

from youtu.errors import ConfigError

__all__ = ["ConfigError", "apply_overrides", "config_hash", "dump_toml", "from_dict", "load_toml",
           "merge", "parse_override", "save_config", "to_dict"]


# ---------------------------------------------------------------------------------------------
# dict <-> dataclass


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check `value` (parsed TOML) against the annotation `tp`; return it converted."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: {value!r} is not a valid {_type_name(tp)}")
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{key}: {value!r} is not one of the valid choices: {choices}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list of {_type_name(args[0])}, got {value!r}")
        return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {value!r}")
        return {str(k): _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table [{key}], got {value!r}")
        return from_dict(tp, value, prefix=key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"config field {key} has an unsupported annotation {tp!r}")


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass `cls` from a nested dict, strictly: unknown keys and bad types raise."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else k
        if k not in fields:
            gone = getattr(cls, "REMOVED_KEYS", {}).get(k)
            if gone:  # a key an older version had: say what became of it
                raise ConfigError(f"config key '{key}' is gone: {gone}")
            close = difflib.get_close_matches(k, list(fields), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            section = f"[{prefix}]" if prefix else "the top level"
            raise ConfigError(
                f"unknown config key '{key}'.{hint} Valid keys in {section}: {', '.join(sorted(fields))}"
            )
        kwargs[k] = _convert(v, hints[k], key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(f"[{prefix or 'top level'}] {e}") from e


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> plain dict (None values dropped: TOML has no null)."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            v = to_dict(getattr(obj, f.name))
            if v is not None:
                out[f.name] = v
        return out
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items() if v is not None}
    return obj


def dump_toml(cfg: Any) -> str:
    """The resolved config as TOML text (loads back to an equal config)."""
    return tomli_w.dumps(to_dict(cfg))


def config_hash(obj: Any) -> str:
    """Stable short hash of a (sub-)config, used to decide whether a step's output is current."""
    blob = json.dumps(to_dict(obj), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# TOML + overrides


def parse_override(arg: str) -> tuple[list[str], Any]:
    """'--model.kv_lora_rank=256' -> (['model', 'kv_lora_rank'], 256). Values are TOML literals;
    anything that does not parse as one is taken as a string (so --name=foo works unquoted)."""
    if not arg.startswith("--") or "=" not in arg:
        raise ConfigError(f"override {arg!r} must look like --section.key=value")
    key, raw = arg[2:].split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {arg!r} has an empty key")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set each dotted override into the nested dict `data` (in place) and return it."""
    for arg in overrides:
        path, value = parse_override(arg)
        node: Any = data
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, list):
                # --train.stages.2.tokens=1000: an index into a list of tables from the TOML
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"override {arg!r}: '{part}' is not an index of "
                                      f"{'.'.join(path[:i])} (0..{len(node) - 1})")
                part = int(part)
            elif not isinstance(node, dict):
                raise ConfigError(f"override {arg!r}: '{path[i - 1]}' is a value, not a section")
            if last:
                node[part] = value
            else:
                if isinstance(node, dict) and part not in node:
                    node[part] = {}
                node = node[part]
    return data


def load_toml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (try one of configs/*.toml)")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from e


def merge(base: dict, over: dict) -> dict:
    """`over` laid onto `base`, tables merged key by key (neither is changed)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as TOML (beside every artifact)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(dump_toml(cfg))
