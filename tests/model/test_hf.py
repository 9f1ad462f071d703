"""Hugging Face interop: parity with transformers' YoutuForCausalLM / DeepseekV3ForCausalLM,
folder round trips, the legacy and official layouts, and clear errors on bad checkpoints."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from youtu import cli
from youtu.config import ConfigError, load_config
from youtu.model import ModelConfig, YoutuForCausalLM
from youtu.model.export import export_main
from youtu.model.hf import config_from_hf, config_to_hf, load_pretrained, save_pretrained

TOL = 1e-4
VARIANTS = ["qlora", "noqlora", "yarn"]


def _ids(n: int = 2, t: int = 96) -> torch.Tensor:
    """Random ids with EOS (= pad, 257) and BOS (256) in them: transformers zeroes the
    embedding row of config.pad_token_id on load, which these parity tests must catch.
    96 tokens > original_max_position_embeddings (64) of the YaRN config: scaling is exercised."""
    ids = torch.randint(0, 512, (n, t))
    ids[:, 0], ids[:, 7], ids[:, 40] = 256, 257, 257
    return ids


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.hf
@torch.no_grad()
@pytest.mark.parametrize("variant", VARIANTS)
def test_our_folder_loads_in_transformers_with_same_logits(variant, make_model, tmp_path):
    from transformers import AutoModelForCausalLM

    model = make_model(variant)
    save_pretrained(model, tmp_path)
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert type(theirs).__name__ == "YoutuForCausalLM"
    assert (theirs.config.q_lora_rank is None) == (variant == "noqlora")
    ids = _ids()
    assert _max_diff(model(ids), theirs(ids).logits) < TOL


@pytest.mark.hf
@torch.no_grad()
@pytest.mark.parametrize("variant", VARIANTS)
def test_transformers_folder_loads_in_ours_with_same_logits(variant, make_config, tmp_path):
    """transformers builds and initialises the model, saves it sharded; we load it."""
    from transformers import YoutuConfig
    from transformers import YoutuForCausalLM as HFYoutu

    torch.manual_seed(0)
    theirs = HFYoutu(YoutuConfig(**config_to_hf(make_config(variant)))).eval()
    theirs.save_pretrained(tmp_path, max_shard_size="200KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    ours = load_pretrained(tmp_path)
    assert ours.config == make_config(variant)
    ids = _ids()
    assert _max_diff(ours(ids), theirs(ids).logits) < TOL


@torch.no_grad()
def test_yarn_changes_the_logits(make_model):
    """Guards the YaRN parity test against a no-op: scaling must matter past 64 tokens."""
    plain, yarn = make_model("qlora"), make_model("yarn")
    assert set(plain.state_dict()) == set(yarn.state_dict())
    yarn.load_state_dict(plain.state_dict())
    ids = _ids(1)
    assert _max_diff(plain(ids), yarn(ids)) > 1e-2


@torch.no_grad()
def test_init_rope_after_a_config_change_equals_a_model_built_with_it(make_model):
    """A curriculum stage switches YaRN on in place (config + init_rope): the RoPE table and
    the softmax scale (mscale_all_dim) must both follow, as in a model built with YaRN."""
    plain, yarn = make_model("qlora"), make_model("yarn")
    plain.config.rope_scaling = yarn.config.rope_scaling
    plain.init_rope()
    yarn.load_state_dict(plain.state_dict())
    ids = _ids(1)
    assert _max_diff(plain(ids), yarn(ids)) < 1e-6


@torch.no_grad()
def test_save_load_round_trip_in_bf16(model, tmp_path):
    save_pretrained(model, tmp_path, dtype=torch.bfloat16)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "youtu" and config["architectures"] == ["YoutuForCausalLM"]
    assert config["dtype"] == "bfloat16"
    tensors = load_file(tmp_path / "model.safetensors")
    assert "lm_head.weight" not in tensors  # tied: stored once, as transformers does
    assert all(t.dtype == torch.bfloat16 for t in tensors.values())
    loaded = load_pretrained(tmp_path, dtype=torch.float32)
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor.to(torch.bfloat16).float()), name


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_round_trip(variant, make_config):
    cfg = make_config(variant)
    assert config_from_hf(json.loads(json.dumps(config_to_hf(cfg)))) == cfg
    assert config_from_hf(config_to_hf(ModelConfig.youtu_2b())) == ModelConfig.youtu_2b()


@torch.no_grad()
def test_legacy_remote_code_config_loads(model, tmp_path):
    """Youtu-LLM's original remote-code config: model_type youtu_llm, top-level rope_theta and
    an identity YaRN block (factor 1), which must mean no scaling."""
    save_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["rope_parameters"]
    config.update(model_type="youtu_llm", rope_theta=model.config.rope_theta,
                  auto_map={"AutoModelForCausalLM": "modeling_youtu.YoutuForCausalLM"},
                  rope_scaling={"type": "yarn", "factor": 1.0, "original_max_position_embeddings": 256,
                                "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0})
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = load_pretrained(tmp_path)
    assert loaded.config.rope_scaling is None and loaded.config == model.config
    ids = _ids()
    assert _max_diff(loaded(ids), model(ids)) == 0.0


@torch.no_grad()
def test_redundant_lm_head_in_tied_checkpoint(model, tmp_path, caplog):
    """The official base checkpoint stores lm_head.weight although embeddings are tied."""
    save_pretrained(model, tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()
    save_file(tensors, tmp_path / "model.safetensors")
    with caplog.at_level(logging.WARNING, logger="youtu.model.hf"):
        loaded = load_pretrained(tmp_path)
    assert not caplog.records
    ids = _ids()
    assert _max_diff(loaded(ids), model(ids)) == 0.0

    tensors["lm_head.weight"] = torch.randn_like(tensors["lm_head.weight"])
    save_file(tensors, tmp_path / "model.safetensors")
    with caplog.at_level(logging.WARNING, logger="youtu.model.hf"):
        loaded = load_pretrained(tmp_path)
    assert "lm_head.weight differs" in caplog.text
    assert loaded.lm_head.weight is loaded.model.embed_tokens.weight


@pytest.mark.hf
@torch.no_grad()
def test_export_youtu_and_deepseek_v3(model, tmp_path, monkeypatch):
    """`export_main` for youtu, the `youtu export` command line for deepseek_v3."""
    from transformers import AutoModelForCausalLM

    src = tmp_path / "ckpt"
    save_pretrained(model, src)
    (src / "tokenizer.json").write_text("{}")
    (src / "tokenizer_config.json").write_text("{}")
    ids = _ids()
    expected = model(ids)

    # no --export.dtype: the checkpoint's (fp32) is kept; bf16 used to move the logits by 0.17
    cfg = load_config(None, [f'--export.checkpoint="{src}"', f'--export.out="{tmp_path / "yt"}"'])
    assert export_main(cfg) == 0
    assert {t.dtype for t in load_file(tmp_path / "yt" / "model.safetensors").values()} == {torch.float32}
    assert _max_diff(AutoModelForCausalLM.from_pretrained(tmp_path / "yt").eval()(ids).logits, expected) < TOL

    out = tmp_path / "ds3"
    monkeypatch.chdir(tmp_path)  # no configs/tiny.toml here: the CLI uses the defaults
    assert cli.main(["export", str(src), str(out), "--export.format=deepseek_v3",
                     "--export.dtype=float32"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "deepseek_v3" and config["architectures"] == ["DeepseekV3ForCausalLM"]
    assert config["first_k_dense_replace"] == config["num_hidden_layers"] == 2
    assert config["tie_word_embeddings"] is False
    # no placeholder experts: llama.cpp aborted on n_routed_experts=1 with n_group=1
    moe_keys = {"n_routed_experts", "num_experts_per_tok", "n_group", "topk_group",
                "n_shared_experts", "moe_intermediate_size", "routed_scaling_factor"}
    assert not moe_keys & set(config), moe_keys & set(config)
    from transformers import AutoConfig
    hf_cfg = AutoConfig.from_pretrained(out)  # what vLLM / SGLang read: integer defaults, unused
    assert isinstance(hf_cfg.n_routed_experts, int) and hf_cfg.first_k_dense_replace == 2
    assert "lm_head.weight" in load_file(out / "model.safetensors")
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer_config.json").is_file()
    ds3 = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert type(ds3).__name__ == "DeepseekV3ForCausalLM"
    assert not any("experts" in name for name in ds3.state_dict())  # dense: no MoE layer built
    assert _max_diff(ds3(ids).logits, expected) < TOL


# ---- bad inputs ----------------------------------------------------------------------------------


def test_unknown_model_config_key_is_named():
    with pytest.raises(ConfigError, match="model.kv_lora_rnk.*kv_lora_rank"):
        load_config(None, ["--model.kv_lora_rnk=64"])


def test_export_needs_a_checkpoint():
    with pytest.raises(ConfigError, match="export needs"):
        export_main(load_config(None, []))


def test_other_model_type_is_refused(model, tmp_path):
    save_pretrained(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(ValueError, match="model_type 'llama'"):
        load_pretrained(tmp_path)


def test_missing_tensor_is_named(model, tmp_path):
    save_pretrained(model, tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["model.layers.1.self_attn.kv_b_proj.weight"]
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing tensors \['model.layers.1.self_attn.kv_b_proj.weight'\]"):
        load_pretrained(tmp_path)


def test_misshaped_tensor_is_named_with_both_shapes(model, tmp_path):
    save_pretrained(model, tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["model.layers.0.mlp.up_proj.weight"] = torch.zeros(100, 128)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"model.layers.0.mlp.up_proj.weight has shape \(100, 128\) "
                                         r"but config.json implies \(384, 128\)"):
        load_pretrained(tmp_path)


def test_unsupported_architecture_settings_are_refused(model):
    for key, value in [("num_key_value_heads", 1), ("attention_bias", True), ("rope_interleave", False)]:
        with pytest.raises(ValueError, match=key):
            config_from_hf({**config_to_hf(model.config), key: value})
    with pytest.raises(ValueError, match="llama3"):
        config_from_hf({**config_to_hf(model.config), "rope_parameters": {"rope_type": "llama3"}})


def test_folder_without_weights_is_reported(model, tmp_path):
    save_pretrained(model, tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_pretrained(tmp_path)


def test_corrupt_files_are_named(model, tmp_path):
    save_pretrained(model, tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a cut download
    with pytest.raises(ValueError, match="model.safetensors is not a readable safetensors file.*truncated"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "youtu",')
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        load_pretrained(tmp_path)


def test_index_naming_a_missing_shard_is_reported(model, tmp_path):
    save_pretrained(model, tmp_path)
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors"}}))
    with pytest.raises(FileNotFoundError, match="missing.*model-00001-of-00002.safetensors"):
        load_pretrained(tmp_path)
