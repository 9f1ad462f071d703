"""`youtu serve`, `youtu chat` and `youtu agent` through the CLI, on a saved tiny checkpoint."""

from __future__ import annotations

import io

import openai

from youtu import cli
from youtu.agentic.trajectory import load_trajectories


def test_youtu_serve_builds_the_app_from_the_checkpoint(checkpoint, live_server, monkeypatch):
    started = {}

    def fake_run(app, host, port, log_level):  # uvicorn.run would block: serve it here instead
        started.update(app=app, host=host, port=port)

    monkeypatch.setattr("uvicorn.run", fake_run)
    assert cli.main(["serve", str(checkpoint), "--device=cpu", "--serve.max_seq_len=512",
                     "--serve.port=8123"]) == 0
    assert (started["host"], started["port"]) == ("127.0.0.1", 8123)
    with live_server(started["app"]) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        assert [m.id for m in client.models.list().data] == [checkpoint.name]
        out = client.completions.create(model=checkpoint.name, prompt="The weather", max_tokens=3)
        assert out.usage.completion_tokens >= 1


def test_youtu_chat_reads_stdin(checkpoint, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n/think off\nhi\n"))
    assert cli.main(["chat", str(checkpoint), "--device=cpu", "--serve.max_new_tokens=4",
                     "--serve.max_seq_len=512"]) == 0
    out = capsys.readouterr().out
    assert out.count("assistant> ") == 2 and "(thinking off)" in out


def test_youtu_agent_writes_a_valid_trajectory(checkpoint, tmp_path, capsys):
    out = tmp_path / "agent.jsonl"
    assert cli.main(["agent", "What is 2+2?", f"--serve.checkpoint={checkpoint}", "--device=cpu",
                     "--serve.max_new_tokens=6", "--serve.agent_max_steps=2",
                     "--serve.max_seq_len=1024", f"--serve.agent_out={out}"]) == 0
    [traj] = load_trajectories(tmp_path)  # validates: whatever the stop, the line is schema-valid
    assert traj.task.prompt == "What is 2+2?" and traj.domain == "tools"
    assert [t["function"]["name"] for t in traj.tools] == ["python"]
    assert traj.messages[1] == {"role": "user", "content": "What is 2+2?"}
    assert traj.provenance["stop"] in ("final", "length", "step_limit", "token_limit", "context")
    assert not traj.outcome.verified
    assert cli.main(["agent", "--device=cpu"]) == 2  # no task: a clear config error
    assert "give a task" in capsys.readouterr().err
