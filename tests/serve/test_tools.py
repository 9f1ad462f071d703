"""Agent tools: document search ranking, argument errors, the sandboxed Python tool."""

from __future__ import annotations

import pytest

from youtu.serve.tools import DocSearch, ToolSet, python_tool, search_tool


@pytest.fixture
def docs(tmp_path):
    (tmp_path / "rope.md").write_text("# RoPE\n\nRotary position embeddings rotate query and key "
                                      "pairs.\n\nThe rope theta of Youtu-LLM is 1.6e6.\n")
    (tmp_path / "mla.txt").write_text("Multi-head latent attention caches a compressed latent "
                                      "per token instead of full keys and values.")
    (tmp_path / "skip.bin").write_bytes(b"\x00theta theta theta")
    return tmp_path


def test_search_ranks_the_matching_passage_first(docs):
    index = DocSearch.from_folder(docs)
    assert {src for src, _ in index.passages} == {"rope.md", "mla.txt"}
    (score, src, text), *rest = index.search("what is the rope theta")
    assert src == "rope.md" and "1.6e6" in text and all(s < score for s, _, _ in rest)
    assert index.search("latent cache")[0][1] == "mla.txt"
    assert index.search("zebra") == []
    with pytest.raises(FileNotFoundError, match="serve.docs"):
        DocSearch.from_folder(docs / "missing")


def test_toolset_turns_every_failure_into_an_observation(docs):
    tools = ToolSet([search_tool(DocSearch.from_folder(docs))])
    assert "rope.md" in tools.call("search_docs", '{"query": "rotary"}')
    assert tools.call("nope", "{}").startswith("error: unknown tool 'nope'")
    assert tools.call("search_docs", "{bad").startswith("error: arguments are not valid JSON")
    assert tools.call("search_docs", "[1]").startswith("error: arguments must be a JSON object")
    assert tools.call("search_docs", '{"query": ""}').startswith("error:")
    assert tools.call("search_docs", '{"query": "zebra"}') == "no passage matches the query"


def test_python_tool_runs_in_the_sandbox():
    tools = ToolSet([python_tool(timeout_s=10)])
    out = tools.call("python", {"code": "print(sum(range(10)))"})
    assert out.startswith("exit code 0") and "45" in out
    failed = tools.call("python", {"code": "raise SystemExit(3)"})
    assert failed.startswith("exit code 3")
