"""The run configuration: every domain's section assembled into one `RunConfig`.

    cfg = load_config("configs/tiny.toml", ["--model.kv_lora_rank=256", "--train.seed=3"])
    print(dump_toml(cfg))

Precedence: dataclass defaults < TOML file < CLI overrides, checked strictly by the config
library (`youtu.configlib`). Each domain owns its section's dataclass in `youtu/<domain>/config.py`
and its functions take only that section; this module sits above every domain and is imported
only by `cli`, `pipeline` and each domain's command entry point (`main`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from youtu.agentic.config import SynthConfig
from youtu.data.config import DataConfig
from youtu.configlib import apply_overrides, dump_toml, from_dict, load_toml, merge, save_config, to_dict
from youtu.errors import ConfigError
from youtu.eval.config import EvalConfig
from youtu.model.config import ExportConfig, ModelConfig
from youtu.serve.config import ServeConfig
from youtu.tokenizer.config import TokenizerConfig
from youtu.rl.config import RLConfig
from youtu.train.config import SFTConfig, TrainConfig


@dataclass(kw_only=True)
class RunConfig:
    """One run of youtu: every section a command may need."""

    name: str = "tiny"
    """Run name; outputs go to `<out_dir>/<name>/`."""
    out_dir: str = "runs"
    """Root folder for run outputs."""
    seed: int = 0
    """Global seed; every component derives its own stream from it."""
    device: str = "auto"
    """'auto' (cuda if available, else cpu), 'cpu', 'cuda', 'cuda:1', ..."""
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    @property
    def run_dir(self) -> Path:
        """Folder holding every artifact of this run."""
        return Path(self.out_dir) / self.name


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults < TOML file < overrides, validated into a `RunConfig`."""
    data = load_toml(path) if path is not None else {}
    apply_overrides(data, list(overrides or []))
    return from_dict(RunConfig, data)


def replace(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """A copy of `cfg` with dotted overrides applied (same strictness as the CLI)."""
    return from_dict(RunConfig, merge(to_dict(cfg), apply_overrides({}, overrides)))


__all__ = ["ConfigError", "RunConfig", "dump_toml", "load_config", "replace", "save_config", "to_dict"]
