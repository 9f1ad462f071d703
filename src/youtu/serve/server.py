"""OpenAI-compatible HTTP server over the engine (FastAPI + uvicorn): `youtu serve <checkpoint>`.

    youtu serve runs/tiny/sft --serve.port=8000 --serve.api_key=secret
    curl -H "Authorization: Bearer secret" localhost:8000/v1/chat/completions \\
         -d '{"model": "sft", "messages": [{"role": "user", "content": "hi"}], "stream": true}'

Endpoints: POST /v1/chat/completions (SSE streaming or not; `tools` + `tool_choice` parsed into
`tool_calls`; thinking on/off per request with `chat_template_kwargs: {"enable_thinking": ...}`
as in vLLM; the think block comes back as `reasoning_content`), POST /v1/completions (prompt
strings or token ids, `echo` + `logprobs` for scoring prompts), GET /v1/models, GET /health,
GET /metrics (Prometheus text: requests, tokens, tokens/s, queue, cache). With an API key set,
/v1/* and /metrics need `Authorization: Bearer <key>` (/health stays open for probes). Every
error is a 4xx/5xx with OpenAI's body `{"error": {"message", "type", "param", "code"}}`; the
server keeps serving. A body over `serve.max_request_bytes` is refused with 413 before it is
read in full. A client that disconnects, streaming or not, cancels its request, which frees its
cache row at the next step. A stream's first chunk (the role) is sent once the engine admitted
the request, so time to first chunk measures queueing and prefill.

The layer is thin: it renders prompts (`youtu.tokenizer.chat`), maps parameters
(`protocol.py`), and turns engine deltas into OpenAI JSON (`textstream.py` for text); the HTTP
boundary (size limit, parsing, error answers) is `guard.py`. Parsing, validation and
tokenization run in worker threads, so a large request never stalls the event loop that
streams every other client's tokens.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from youtu.serve.engine import (AsyncStream, Completion, Engine, EngineFullError, RequestError,
                                StreamDelta)
from youtu.serve.guard import HTTPGuard, install_error_handlers, parse_request
from youtu.serve.protocol import (APIError, ChatCompletionRequest, CompletionRequest,
                                  assistant_message, build_chat_prompt, sampling_params)
from youtu.serve.textstream import ChatStreamSplitter, TextStream

if TYPE_CHECKING:
    from youtu.config import RunConfig
    from youtu.serve.config import ServeConfig
    from youtu.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


class _Choice:
    """Per-choice text state while streaming."""

    def __init__(self, tok: Tokenizer, stop: list[str], prefix: str = "", tools: bool = False):
        self.text = TextStream(lambda ids: tok.decode(ids), stop)
        self.split = ChatStreamSplitter(prefix, tools)
        self.ids: list[int] = []
        self.pending_logprobs: list[dict] = []
        self.content = ""  # content streamed so far


async def _merge(streams: list[AsyncStream]) -> AsyncIterator[tuple[int, StreamDelta]]:
    """Interleave several request streams as (choice index, delta); cancels all on exit."""
    if len(streams) == 1:
        async with streams[0]:
            async for delta in streams[0]:
                yield 0, delta
        return
    merged: asyncio.Queue[tuple[int, StreamDelta | None]] = asyncio.Queue()

    async def pump(i: int, stream: AsyncStream) -> None:
        try:
            async for delta in stream:
                await merged.put((i, delta))
        finally:
            await merged.put((i, None))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        open_streams = len(tasks)
        while open_streams:
            i, delta = await merged.get()
            if delta is None:
                open_streams -= 1
            else:
                yield i, delta
    finally:
        for stream in streams:
            stream.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _generation_failed(completion) -> str:
    """The SSE event a stream ends a choice with when its generation failed in the engine."""
    return _sse({"error": {"message": f"generation failed: {completion.error}",
                           "type": "server_error", "param": None, "code": None}})


class OpenAIServer:
    """Request handling behind the routes of `create_app` (one per app)."""

    def __init__(self, engine: Engine, tok: Tokenizer, cfg: ServeConfig):
        self.engine, self.tok, self.cfg = engine, tok, cfg
        self.model_id = cfg.served_model_name or Path(cfg.checkpoint).name or "youtu"
        self.api_key = cfg.api_key or os.environ.get("YOUTU_API_KEY", "")
        self.created = int(time.time())
        self.http_status: collections.Counter[tuple[str, int]] = collections.Counter()

    # ---- shared checks ------------------------------------------------------------------------

    def check_auth(self, request: Request) -> None:
        if not self.api_key:
            return
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        # Bytes, not str: compare_digest refuses non-ASCII str (HTTP headers arrive as latin-1).
        given = key.strip().encode("latin-1", "replace")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, self.api_key.encode()):
            raise APIError(401, "missing or incorrect API key; send 'Authorization: Bearer <key>'",
                           code="invalid_api_key")

    def check_model(self, model: str) -> None:
        if model != self.model_id:
            raise APIError(404, f"the model '{model}' does not exist; this server serves "
                           f"'{self.model_id}' (GET /v1/models)", param="model",
                           code="model_not_found")

    def max_tokens(self, prompt_len: int, requested: int | None) -> int:
        context = self.engine.max_seq_len
        if prompt_len >= context:
            raise APIError(400, f"this model's maximum context length is {context} tokens, but "
                           f"the prompt has {prompt_len}; shorten it", param="messages",
                           code="context_length_exceeded")
        room = context - prompt_len
        if requested is None:
            return min(self.cfg.max_new_tokens, room)
        if requested > room:
            raise APIError(400, f"this model's maximum context length is {context} tokens; you "
                           f"requested {prompt_len + requested} ({prompt_len} in the prompt, "
                           f"{requested} to generate); lower max_tokens", param="max_tokens",
                           code="context_length_exceeded")
        return requested

    def open_streams(self, prompts: list[list[int]], params: list) -> list[AsyncStream]:
        streams: list[AsyncStream] = []
        try:
            for ids, p in zip(prompts, params):
                streams.append(self.engine.stream(ids, p, request_id=f"r-{uuid.uuid4().hex[:16]}"))
        except RequestError as e:
            for s in streams:
                s.cancel()
            raise APIError(400, str(e)) from e
        except EngineFullError as e:
            for s in streams:
                s.cancel()
            raise APIError(503, str(e), type="server_overloaded", code="queue_full") from e
        return streams

    async def collect(self, request: Request, streams: list[AsyncStream]) -> list[Completion]:
        """Wait for every stream; cancel them all if the client goes away meanwhile."""
        async def watch() -> None:
            while not await request.is_disconnected():
                await asyncio.sleep(0.25)

        gathered = asyncio.gather(*(s.completion() for s in streams))
        watcher = asyncio.create_task(watch())
        try:
            done, _ = await asyncio.wait({gathered, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if gathered not in done:
                gathered.cancel()
                raise APIError(499, "client closed the request", code="client_closed")
            results = gathered.result()
        finally:
            watcher.cancel()
            for s in streams:
                s.cancel()
        for c in results:
            if c.finish_reason == "error":
                raise APIError(500, f"generation failed: {c.error}", type="server_error")
        return results

    def stop_ids(self, params) -> set[int]:
        return set(params.stop_token_ids) | (set() if params.ignore_eos else set(self.engine.eos_ids))

    def visible_ids(self, ids: list[int], stop_ids: set[int]) -> list[int]:
        return [t for t in ids if t not in stop_ids]

    # ---- logprobs ------------------------------------------------------------------------------

    def _token_str(self, token: int) -> str:
        return self.tok.decode([token])

    def chat_logprob(self, token: int, lp: float, top: list[tuple[int, float]] | None) -> dict:
        def entry(t: int, v: float) -> dict:
            return {"token": self._token_str(t), "logprob": v, "bytes": list(self.tok.token_bytes(t))}
        out = entry(token, lp)
        out["top_logprobs"] = [entry(t, v) for t, v in (top or [])]
        return out

    def completion_logprobs(self, ids: list[int], lps: list[float | None],
                            tops: list[list[tuple[int, float]]] | None, offset: int) -> dict:
        tokens = [self._token_str(t) for t in ids]
        offsets, pos = [], offset
        for s in tokens:
            offsets.append(pos)
            pos += len(s)
        return {"tokens": tokens, "token_logprobs": lps,
                "top_logprobs": [{self._token_str(t): v for t, v in top} if top else None
                                 for top in (tops or [None] * len(ids))],
                "text_offset": offsets}

    # ---- /v1/chat/completions -------------------------------------------------------------------

    async def chat(self, req: ChatCompletionRequest, request: Request) -> Any:
        self.check_model(req.model)
        thinking = self.cfg.enable_thinking if req.enable_thinking is None else req.enable_thinking
        prompt = await asyncio.to_thread(build_chat_prompt, self.tok, req.messages, req.tools,
                                         req.tool_choice, thinking)
        max_tokens = self.max_tokens(len(prompt.ids), req.max_completion_tokens or req.max_tokens)
        n_top = (req.top_logprobs or 0) if req.logprobs else 0
        params = [sampling_params(req, max_tokens, default_temperature=self.cfg.temperature,
                                  default_top_p=self.cfg.top_p, logprobs=n_top, seed_offset=i)
                  for i in range(req.n)]
        streams = self.open_streams([prompt.ids] * req.n, params)
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        stop_ids = self.stop_ids(params[0])
        if req.stream:
            return StreamingResponse(self.chat_events(req, prompt, streams, rid, created, stop_ids),
                                     media_type="text/event-stream")
        results = await self.collect(request, streams)
        choices = []
        for i, c in enumerate(results):
            state = _Choice(self.tok, params[0].stop)
            state.text.push(self.visible_ids(c.token_ids, stop_ids))
            state.text.finish()
            message, finish = assistant_message(prompt.prefix + state.text.final_text,
                                                prompt.tools_active, c.finish_reason,
                                                prompt.tool_names)
            logprobs = None
            if req.logprobs:
                logprobs = {"content": [self.chat_logprob(t, lp, c.top_logprobs[k] if c.top_logprobs else None)
                                        for k, (t, lp) in enumerate(zip(c.token_ids, c.logprobs))]}
            choices.append({"index": i, "message": message, "logprobs": logprobs,
                            "finish_reason": finish})
        return {"id": rid, "object": "chat.completion", "created": created, "model": self.model_id,
                "choices": choices, "usage": self.usage(len(prompt.ids), results)}

    async def chat_events(self, req: ChatCompletionRequest, prompt, streams: list[AsyncStream],
                          rid: str, created: int, stop_ids: set[int]) -> AsyncIterator[str]:
        def chunk(i: int, delta: dict, finish: str | None = None, logprobs: list | None = None) -> str:
            choice = {"index": i, "delta": delta, "logprobs": {"content": logprobs} if logprobs else None,
                      "finish_reason": finish}
            return _sse({"id": rid, "object": "chat.completion.chunk", "created": created,
                         "model": self.model_id, "choices": [choice]})

        stop = list(req.stop or [])  # type: ignore[arg-type]
        states = [_Choice(self.tok, stop, prompt.prefix, prompt.tools_active) for _ in streams]
        finals: list[Completion] = []
        started = [False] * len(streams)
        async for i, d in _merge(streams):
            st = states[i]
            if not started[i]:  # the engine admitted the request and ran its prefill
                started[i] = True
                yield chunk(i, {"role": "assistant", "content": ""})
            if req.logprobs:
                st.pending_logprobs += [self.chat_logprob(t, lp, d.top_logprobs[k] if d.top_logprobs else None)
                                        for k, (t, lp) in enumerate(zip(d.token_ids, d.logprobs))]
            text = st.text.push(self.visible_ids(d.token_ids, stop_ids))
            parts = st.split.feed(text)
            if d.finish_reason is not None:
                parts += st.split.feed(st.text.finish()) + st.split.finish()
            for kind, t in parts:
                key = "reasoning_content" if kind == "reasoning" else "content"
                if key == "content":
                    st.content += t
                yield chunk(i, {key: t}, logprobs=st.pending_logprobs or None)
                st.pending_logprobs = []
            if d.finish_reason is None:
                continue
            assert d.completion is not None
            finals.append(d.completion)
            if d.finish_reason == "error":
                yield _generation_failed(d.completion)
                continue
            finish = d.finish_reason
            if st.split.saw_tool_call:
                # The held-back call text is parsed as the non-streaming reply is; a call that
                # does not parse comes out as the text the model wrote plus `tool_call_errors`.
                message, finish = assistant_message(prompt.prefix + st.text.final_text, True,
                                                    finish, prompt.tool_names)
                calls = message.get("tool_calls") or []
                delta: dict[str, Any] = {}
                if calls:
                    delta["tool_calls"] = [{"index": k, **c} for k, c in enumerate(calls)]
                elif message.get("content"):  # the rest of the text, as the plain reply has it
                    full = message["content"]
                    rest = full[len(st.content):] if full.startswith(st.content) else st.split.buf
                    if rest.strip():
                        delta["content"] = rest
                if message.get("tool_call_errors"):
                    delta["tool_call_errors"] = message["tool_call_errors"]
                if delta:
                    yield chunk(i, delta)
            yield chunk(i, {}, finish, logprobs=st.pending_logprobs or None)
        if req.stream_options and req.stream_options.include_usage:
            yield _sse({"id": rid, "object": "chat.completion.chunk", "created": created,
                        "model": self.model_id, "choices": [],
                        "usage": self.usage(len(prompt.ids), finals)})
        yield "data: [DONE]\n\n"

    # ---- /v1/completions ------------------------------------------------------------------------

    async def completions(self, req: CompletionRequest, request: Request) -> Any:
        self.check_model(req.model)
        prompts = await asyncio.to_thread(req.prompts, self.tok)
        for ids in prompts:
            if not ids:
                raise APIError(400, "a prompt is empty", param="prompt")
        max_tokens = min(self.max_tokens(len(ids), req.max_tokens) for ids in prompts)
        n_top = req.logprobs or 0
        want_prompt = req.echo and req.logprobs is not None
        jobs = [(p, i) for p in range(len(prompts)) for i in range(req.n)]
        params = [sampling_params(req, max_tokens, default_temperature=self.cfg.temperature,
                                  default_top_p=self.cfg.top_p, logprobs=n_top,
                                  prompt_logprobs=want_prompt, seed_offset=i) for _, i in jobs]
        streams = self.open_streams([prompts[p] for p, _ in jobs], params)
        rid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        stop_ids = self.stop_ids(params[0])
        if req.stream:
            return StreamingResponse(self.completion_events(req, prompts, jobs, streams, rid,
                                                            created, stop_ids),
                                     media_type="text/event-stream")
        results = await self.collect(request, streams)
        choices = []
        for index, ((p, _), c) in enumerate(zip(jobs, results)):
            state = _Choice(self.tok, params[0].stop)
            state.text.push(self.visible_ids(c.token_ids, stop_ids))
            state.text.finish()
            text = state.text.final_text
            prompt_text = self.tok.decode(prompts[p]) if req.echo else ""
            logprobs = None
            if req.logprobs is not None:
                ids, lps, tops = list(c.token_ids), list(c.logprobs), list(c.top_logprobs or [])
                if req.echo:
                    ids = prompts[p] + ids
                    lps = c.prompt_logprobs + lps
                    tops = ([None] + c.prompt_top_logprobs + tops) if n_top else []
                logprobs = self.completion_logprobs(ids, lps, tops or None, 0)
            choices.append({"index": index, "text": prompt_text + text, "logprobs": logprobs,
                            "finish_reason": c.finish_reason})
        usage = {"prompt_tokens": sum(len(prompts[p]) for p, i in jobs if i == 0),
                 "completion_tokens": sum(len(c.token_ids) for c in results)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return {"id": rid, "object": "text_completion", "created": created, "model": self.model_id,
                "choices": choices, "usage": usage}

    async def completion_events(self, req: CompletionRequest, prompts: list[list[int]], jobs,
                                streams: list[AsyncStream], rid: str, created: int,
                                stop_ids: set[int]) -> AsyncIterator[str]:
        def chunk(i: int, text: str, finish: str | None = None, logprobs: dict | None = None) -> str:
            return _sse({"id": rid, "object": "text_completion", "created": created,
                         "model": self.model_id, "choices": [{"index": i, "text": text,
                                                              "logprobs": logprobs,
                                                              "finish_reason": finish}]})

        stop = list(req.stop or [])  # type: ignore[arg-type]
        states = [_Choice(self.tok, stop) for _ in streams]
        finals: list[Completion] = []
        if req.echo:
            for i, (p, _) in enumerate(jobs):
                yield chunk(i, self.tok.decode(prompts[p]))
        async for i, d in _merge(streams):
            st = states[i]
            text = st.text.push(self.visible_ids(d.token_ids, stop_ids))
            if d.finish_reason is not None:
                text += st.text.finish()
            logprobs = None
            if req.logprobs is not None and d.token_ids:
                logprobs = self.completion_logprobs(d.token_ids, list(d.logprobs),
                                                    d.top_logprobs or None, 0)
            if text or logprobs:
                yield chunk(i, text, logprobs=logprobs)
            if d.finish_reason is not None:
                assert d.completion is not None
                finals.append(d.completion)
                if d.finish_reason == "error":
                    yield _generation_failed(d.completion)
                    continue
                yield chunk(i, "", d.finish_reason)
        if req.stream_options and req.stream_options.include_usage:
            prompt_tokens = sum(len(prompts[p]) for p, i in jobs if i == 0)
            completion_tokens = sum(len(c.token_ids) for c in finals)
            yield _sse({"id": rid, "object": "text_completion", "created": created,
                        "model": self.model_id, "choices": [],
                        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                  "total_tokens": prompt_tokens + completion_tokens}})
        yield "data: [DONE]\n\n"

    # ---- misc ----------------------------------------------------------------------------------

    @staticmethod
    def usage(prompt_tokens: int, results: list[Completion]) -> dict:
        completion = sum(len(c.token_ids) for c in results)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion}

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.model_id, "object": "model",
                                            "created": self.created, "owned_by": "youtu",
                                            "max_model_len": self.engine.max_seq_len}]}

    def metrics_text(self) -> str:
        """Prometheus text exposition of the engine's counters and gauges."""
        lines = []
        for name, value in self.engine.metrics().items():
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# TYPE youtu_{name} {kind}", f"youtu_{name} {value}"]
        lines.append("# TYPE youtu_http_responses_total counter")
        for (path, status), count in sorted(self.http_status.items()):
            lines.append(f'youtu_http_responses_total{{path="{path}",status="{status}"}} {count}')
        return "\n".join(lines) + "\n"


def create_app(engine: Engine, tokenizer: Tokenizer, cfg: ServeConfig) -> FastAPI:
    """The FastAPI app serving `engine` (its background loop runs while the app does)."""
    server = OpenAIServer(engine, tokenizer, cfg)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        engine.start()
        try:
            yield
        finally:
            engine.shutdown()

    app = FastAPI(title="youtu", lifespan=lifespan)
    app.state.server = server
    app.add_middleware(HTTPGuard, counter=server.http_status, max_bytes=cfg.max_request_bytes)

    install_error_handlers(app)

    @app.get("/health")
    async def health():
        if not engine.running:
            return JSONResponse({"status": "engine stopped"}, status_code=503)
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics(request: Request):
        server.check_auth(request)
        return PlainTextResponse(server.metrics_text())

    @app.get("/v1/models")
    async def models(request: Request):
        server.check_auth(request)
        return server.models()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        server.check_auth(request)
        return await server.chat(await parse_request(request, ChatCompletionRequest), request)

    @app.post("/v1/completions")
    async def completions(request: Request):
        server.check_auth(request)
        return await server.completions(await parse_request(request, CompletionRequest), request)

    return app


def main(cfg: RunConfig) -> int:
    """`youtu serve`: load the checkpoint and serve it until interrupted."""
    import dataclasses

    import uvicorn

    from youtu.config import replace
    from youtu.serve.engine import engine_from_config, resolve_checkpoint

    folder = resolve_checkpoint(cfg.serve.checkpoint, cfg.run_dir)
    cfg = replace(cfg, [f"--serve.checkpoint={json.dumps(str(folder))}"])
    engine, tok = engine_from_config(cfg.serve, run_dir=cfg.run_dir, device=cfg.device,
                                     seed=cfg.seed)
    if engine.graphs is not None and not cfg.serve.compile_decode:
        engine.graphs.capture_all()  # compiled buckets are captured lazily: ~80 s each at 2B
    serve_cfg = cfg.serve
    if not serve_cfg.served_model_name:
        serve_cfg = dataclasses.replace(serve_cfg, served_model_name=folder.name)
    app = create_app(engine, tok, serve_cfg)
    logger.info("serving %s on http://%s:%d/v1 (max_batch %d, context %d, cache %.1f MiB)",
                app.state.server.model_id, cfg.serve.host, cfg.serve.port, engine.max_batch,
                engine.max_seq_len, engine.cache.nbytes / 2**20)
    uvicorn.run(app, host=cfg.serve.host, port=cfg.serve.port, log_level="info")
    return 0
