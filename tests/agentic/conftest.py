"""Shared fixtures for youtu.agentic tests: a scriptable fake OpenAI-compatible server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

Reply = Callable[[dict[str, Any], int], Any]
"""(request body, request number) -> a message dict, a ('raw', status, text) tuple, or
('sleep', seconds, then)."""


class FakeOpenAI:
    """A loopback HTTP server speaking just enough of /v1/chat/completions for the teacher."""

    def __init__(self, reply: Reply):
        self.reply = reply
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append(body)
                    n = len(fake.requests)
                out = fake.reply(body, n)
                while isinstance(out, tuple) and out[0] == "sleep":
                    time.sleep(out[1])
                    out = out[2]
                if isinstance(out, tuple) and out[0] == "raw":
                    status, text = out[1], out[2]
                else:
                    status, text = 200, json.dumps({"id": f"c{n}", "object": "chat.completion",
                                                    "choices": [{"index": 0, "message": out,
                                                                 "finish_reason": "stop"}]})
                data = text.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_openai() -> Iterator[Callable[[Reply], FakeOpenAI]]:
    servers: list[FakeOpenAI] = []

    def start(reply: Reply) -> FakeOpenAI:
        servers.append(FakeOpenAI(reply))
        return servers[-1]

    yield start
    for s in servers:
        s.close()
