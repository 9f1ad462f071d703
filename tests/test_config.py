"""Config: strict loading, overrides, dump/load round trip, every shipped TOML loads."""

from pathlib import Path

import pytest

from youtu.config import ConfigError, RunConfig, dump_toml, load_config, replace
from youtu.model.config import ModelConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)
    assert cfg.name == path.stem


def test_2b_config_is_the_preset():
    assert load_config(ROOT / "configs/youtu-2b.toml").model == ModelConfig.youtu_2b()


def test_tiny_config_is_the_preset():
    assert load_config(ROOT / "configs/tiny.toml").model == ModelConfig.tiny()


def test_overrides_apply_and_parse_types(tmp_path):
    cfg = load_config(None, ["--model.kv_lora_rank=256", "--name=abc", "--model.rope_theta=5e5"])
    assert cfg.model.kv_lora_rank == 256 and cfg.name == "abc" and cfg.model.rope_theta == 5e5


def test_unknown_key_names_key_and_choices(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.kv_lora_rnak.*Did you mean 'kv_lora_rank'"):
        load_config(None, ["--model.kv_lora_rnak=3"])
    p = tmp_path / "bad.toml"
    p.write_text("[modle]\nhidden_size = 3\n")
    with pytest.raises(ConfigError, match="unknown config key 'modle'.*Valid keys"):
        load_config(p)


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"model\.hidden_size: expected an integer"):
        load_config(None, ["--model.hidden_size=big"])
    with pytest.raises(ConfigError, match=r"export\.format.*valid choices"):
        load_config(None, ["--export.format=onnx"])


def test_validation_error_becomes_config_error():
    with pytest.raises(ConfigError, match="qk_rope_head_dim"):
        load_config(None, ["--model.qk_rope_head_dim=7"])


def test_missing_and_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    p = tmp_path / "broken.toml"
    p.write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)


def test_dump_load_round_trip(tmp_path):
    cfg = load_config(ROOT / "configs/tiny.toml", ["--model.rope_scaling.factor=8.0"])
    p = tmp_path / "run.toml"
    p.write_text(dump_toml(cfg))
    assert load_config(p) == cfg


def test_replace_keeps_other_values():
    cfg = load_config(ROOT / "configs/tiny.toml")
    cfg2 = replace(cfg, ["--seed=7"])
    assert cfg2.seed == 7 and cfg2.model == cfg.model


def test_override_into_list_of_tables():
    cfg = load_config(ROOT / "configs/tiny.toml", ["--train.stages.1.tokens=16384",
                                                    "--train.stages.0.mix.code=0.5"])
    assert cfg.train.stages[1].tokens == 16384
    assert cfg.train.stages[0].mix["code"] == 0.5
    with pytest.raises(ConfigError, match="not an index"):
        load_config(ROOT / "configs/tiny.toml", ["--train.stages.9.tokens=1"])
