"""The HTTP boundary of the server: request-size limit, response counting, JSON parsing and the
OpenAI-shaped error answers (`youtu.serve.server` wires them into its app).

    app.add_middleware(HTTPGuard, counter=statuses, max_bytes=4 * 2**20)
    install_error_handlers(app)
    req = await parse_request(request, ChatCompletionRequest)   # 400 / 413 as APIError

Every failure becomes `{"error": {"message", "type", "param", "code"}}` with a 4xx status (5xx
only for a bug, still in that shape). Bodies are decoded and validated in a worker thread.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from youtu.serve.protocol import APIError, refuse_unsupported

logger = logging.getLogger(__name__)


def _error_response(e: APIError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


def _too_large(limit: int) -> APIError:
    return APIError(413, f"the request body exceeds {limit} bytes (serve.max_request_bytes); "
                    "send a smaller request", code="request_too_large")


class HTTPGuard:
    """Pure-ASGI middleware: counts responses per (path, status) for /metrics and refuses
    bodies over `max_bytes` with 413, by their Content-Length before reading anything, else
    (chunked bodies) as soon as the bytes read pass the limit.

    Pure ASGI, not Starlette's BaseHTTPMiddleware: that one hands the app a wrapped `receive`
    on which `request.is_disconnected()` never sees the client leave, so abandoned
    non-streaming requests kept their cache rows to the end.
    """

    def __init__(self, app, counter: collections.Counter, max_bytes: int):
        self.app, self.counter, self.max_bytes = app, counter, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        status = [500]

        async def send_counted(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_bytes:
                response = _error_response(_too_large(self.max_bytes))
                await response(scope, receive, send_counted)
                return
            seen = [0]

            async def receive_limited():
                message = await receive()
                if message["type"] == "http.request":
                    seen[0] += len(message.get("body", b""))
                    if seen[0] > self.max_bytes:
                        raise _too_large(self.max_bytes)
                return message

            await self.app(scope, receive_limited, send_counted)
        finally:
            self.counter[(path, status[0])] += 1


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error the app raises (ours, validation, routing, bugs) in OpenAI's shape."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError):
        return _error_response(e)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError):
        errors = e.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            return _error_response(APIError(400, f"the request body is not valid JSON: "
                                            f"{first.get('ctx', {}).get('error', '')}"))
        loc = ".".join(str(x) for x in first.get("loc", ())[1:])
        msg = "; ".join(f"{'.'.join(str(x) for x in err.get('loc', ())[1:]) or 'body'}: {err.get('msg')}"
                        for err in errors)
        return _error_response(APIError(400, msg, param=loc or None))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
        return _error_response(APIError(e.status_code, str(e.detail), type=kind))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception):
        # A bug, still answered in the OpenAI shape (and logged) so clients parse it.
        logger.error("unhandled error on %s: %s", request.url.path, e, exc_info=e)
        return _error_response(APIError(500, f"internal error: {type(e).__name__}: {e}",
                                        type="server_error"))


async def parse_request(request: Request, model: type) -> Any:
    """Body -> request model, after auth (FastAPI's own parsing would run before the auth check).
    The body is read here (HTTPGuard bounds it); decoding and validation run in a worker thread."""
    return await asyncio.to_thread(parse_body, await request.body(), model)


def parse_body(raw: bytes, model: type) -> Any:
    """Raw JSON body -> validated request model; every failure is a 400 `APIError` (or a
    `RequestValidationError`, answered as 400 by the app) naming the problem."""
    from pydantic import ValidationError

    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, f"the request body is not valid JSON: {e}") from e
    except RecursionError as e:
        raise APIError(400, "the request body is nested too deeply; flatten it") from e
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    try:
        # Lone UTF-16 surrogates ("\ud800") decode to str that cannot become UTF-8 text.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        raise APIError(400, f"the request body holds an unpaired UTF-16 surrogate "
                       f"({e.object[e.start:e.end]!r}); send valid Unicode text") from e
    except RecursionError as e:
        raise APIError(400, "the request body is nested too deeply; flatten it") from e
    refuse_unsupported(body)
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from e
    except RecursionError as e:
        raise APIError(400, "the request body is nested too deeply; flatten it") from e
