"""GGUF export: the file's metadata and tensors read back with the `gguf` package's reader, and
(slow, needs llama-cpp-python) the file run in llama.cpp gives youtu's tokens and greedy output.

The slow test is the acceptance check of the export:
    pip install llama-cpp-python     # compiles llama.cpp, ~20-40 min on 2 cores
    PYTHONPATH=src python -m pytest -q -m slow tests/model/test_gguf.py
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from youtu import cli
from youtu.model import ModelConfig, YoutuForCausalLM
from youtu.model.hf import load_pretrained, save_pretrained

gguf = pytest.importorskip("gguf")

TEXTS = ["The weather in Paris is sunny and warm today.", "def add(a, b):\n    return a + b\n",
         "What is 12 times 7? The answer is 84."] * 30


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from youtu.tokenizer.train import train_from_texts

    tok = train_from_texts(TEXTS, vocab_size=1024)
    torch.manual_seed(0)
    model = YoutuForCausalLM(ModelConfig.tiny(vocab_size=tok.vocab_size))
    model.init_weights()
    folder = tmp_path_factory.mktemp("gguf") / "tiny"
    save_pretrained(model, folder)
    tok.save(folder)
    return folder, tok


def _fields(reader) -> dict:
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def test_gguf_export_writes_llama_cpp_deepseek2_layout(checkpoint, tmp_path, monkeypatch):
    folder, tok = checkpoint
    out = tmp_path / "tiny.gguf"
    monkeypatch.chdir(tmp_path)
    assert cli.main(["export", str(folder), str(out), "--format=gguf"]) == 0
    model = load_pretrained(folder)
    cfg = model.config
    reader = gguf.GGUFReader(out)
    f = _fields(reader)
    assert f["general.architecture"] == "deepseek2" and f["tokenizer.ggml.pre"] == "youtu"
    assert f["deepseek2.leading_dense_block_count"] == cfg.num_hidden_layers  # dense
    assert not [k for k in f if "expert_count" in k or "expert_group" in k]  # no fake experts
    assert f["deepseek2.attention.head_count_kv"] == 1
    assert f["deepseek2.attention.key_length_mla"] == cfg.qk_nope_head_dim + cfg.qk_rope_head_dim
    assert len(f["tokenizer.ggml.tokens"]) == cfg.vocab_size
    assert f["tokenizer.ggml.tokens"][tok.bos_id] == "<|begin_of_text|>"
    assert f["tokenizer.ggml.eos_token_id"] == tok.eos_id
    assert "<|Assistant|>" in f["tokenizer.chat_template"]

    tensors = {t.name: t for t in reader.tensors}
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    assert {t.tensor_type.name for t in tensors.values()} == {"F32"}  # the checkpoint's dtype
    state = model.state_dict()
    embd = np.array(tensors["token_embd.weight"].data)
    np.testing.assert_array_equal(embd, state["model.embed_tokens.weight"].numpy())
    # k_b ([H, C, nope], transposed) and v_b ([H, v, C]) put back together are kv_b_proj
    H, nope, v = cfg.num_attention_heads, cfg.qk_nope_head_dim, cfg.v_head_dim
    for i in range(cfg.num_hidden_layers):
        k_b = torch.from_numpy(np.array(tensors[f"blk.{i}.attn_k_b.weight"].data))
        v_b = torch.from_numpy(np.array(tensors[f"blk.{i}.attn_v_b.weight"].data))
        kv_b = torch.cat([k_b.transpose(1, 2), v_b], dim=1).reshape(H * (nope + v), -1)
        torch.testing.assert_close(kv_b, state[f"model.layers.{i}.self_attn.kv_b_proj.weight"],
                                   rtol=0, atol=0)


def test_gguf_export_of_a_bf16_checkpoint_stays_bf16(checkpoint, tmp_path):
    from youtu.model.gguf import save_gguf

    folder, _ = checkpoint
    bf16 = tmp_path / "bf16"
    save_pretrained(load_pretrained(folder), bf16, dtype=torch.bfloat16)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (bf16 / name).write_bytes((folder / name).read_bytes())
    assert cli.main(["export", str(bf16), str(tmp_path / "out"), "--export.format=gguf"]) == 0
    reader = gguf.GGUFReader(tmp_path / "out" / "model.gguf")
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["blk.0.attn_q_a.weight"] == "BF16" and kinds["blk.0.attn_norm.weight"] == "F32"
    with pytest.raises(ValueError, match="float32, bfloat16 or float16"):
        save_gguf(load_pretrained(folder), folder, tmp_path / "x.gguf", dtype=torch.float64)


@pytest.mark.slow
def test_llama_cpp_runs_the_gguf_with_youtus_tokens_and_greedy_output(checkpoint, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    from youtu.model.gguf import save_gguf
    from youtu.serve.engine import Engine
    from youtu.serve.sampling import SamplingParams

    folder, tok = checkpoint
    model = load_pretrained(folder)
    path = save_gguf(model, folder, tmp_path / "tiny.gguf")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=1, verbose=False,
                          logits_all=False)
    for text in ("The weather in Paris is sunny.", "What is 12 times 7? 84", "def add(a, b):"):
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == tok.encode(text)

    engine = Engine(model, max_batch=1, max_seq_len=256, eos_ids=[tok.eos_id])
    for text in ("The weather in Paris", "What is 12 times"):
        prompt = [tok.bos_id, *tok.encode(text)]
        [ours] = engine.generate([prompt], SamplingParams(temperature=0, max_tokens=16,
                                                          ignore_eos=True))
        llm.reset()
        theirs = []
        for token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
            theirs.append(token)
            if len(theirs) == 16:
                break
        assert theirs == ours.token_ids, (text, theirs, ours.token_ids)
