"""The OpenAI-compatible server on loopback, driven by the official `openai` client: chat,
streaming, thinking, tool-call round trips (scripted model and real engine), completions,
errors, auth, health and metrics."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
import torch

from youtu.serve.config import ServeConfig
from youtu.serve.engine import Engine
from youtu.serve.server import create_app
from youtu.tokenizer.chat import encode_chat

MODEL = "tiny-chat"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def _cfg(**kw) -> ServeConfig:
    return ServeConfig(**{"served_model_name": MODEL, "temperature": 0.0, "max_new_tokens": 16, **kw})


def _client(server, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def real_engine(model, tok):
    return Engine(model, max_batch=4, max_seq_len=1024, eos_ids=[tok.eos_id], detokenize=tok.decode)


# ---- real tiny model ---------------------------------------------------------------------------


def test_chat_stream_and_completions_with_the_real_engine(real_engine, tok, model, live_server):
    with live_server(create_app(real_engine, tok, _cfg())) as server:
        client = _client(server)
        assert [m.id for m in client.models.list().data] == [MODEL]

        messages = [{"role": "user", "content": "What is the weather in Paris?"}]
        reply = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12,
                                               temperature=0,
                                               extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        choice = reply.choices[0]
        assert choice.finish_reason in ("stop", "length") and reply.usage.completion_tokens >= 1
        # the same greedy tokens as the engine straight from the rendered prompt
        ids, _ = encode_chat(tok, messages, enable_thinking=False, add_generation_prompt=True)
        assert reply.usage.prompt_tokens == len(ids)
        direct = real_engine.generate([ids], _greedy(12))[0]
        assert reply.usage.completion_tokens == len(direct.token_ids)

        stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12,
                                                temperature=0, stream=True,
                                                stream_options={"include_usage": True},
                                                extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        chunks = list(stream)
        assert chunks[0].choices[0].delta.role == "assistant"
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed.strip() == (choice.message.content or "").strip()
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == choice.finish_reason
        assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens

        # tool result sent back through the real engine: the conversation renders and completes
        call = {"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}
        follow = client.chat.completions.create(
            model=MODEL, tools=[WEATHER_TOOL], max_tokens=8, temperature=0,
            messages=messages + [{"role": "assistant", "content": None, "tool_calls": [call]},
                                 {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24 C"}])
        assert follow.choices[0].finish_reason in ("stop", "length", "tool_calls")

        # completions: text, token-id prompts, streaming, echo + logprobs scoring the prompt
        prompt_ids = [tok.bos_id, *tok.encode("The weather in Paris")]  # what a string prompt becomes
        comp = client.completions.create(model=MODEL, prompt=prompt_ids, max_tokens=6, temperature=0)
        direct = real_engine.generate([prompt_ids], _greedy(6))[0]
        visible = [t for t in direct.token_ids if t != tok.eos_id]
        assert comp.choices[0].text == tok.decode(visible)
        texts = [c.choices[0].text for c in client.completions.create(
            model=MODEL, prompt="The weather in Paris", max_tokens=6, temperature=0, stream=True)]
        assert "".join(texts) == comp.choices[0].text

        scored = client.completions.create(model=MODEL, prompt=prompt_ids, max_tokens=0, echo=True,
                                           logprobs=1)
        lps = scored.choices[0].logprobs.token_logprobs
        with torch.no_grad():
            full = model(torch.tensor([prompt_ids]))[0].float().log_softmax(-1)
        expected = full[:-1].gather(-1, torch.tensor(prompt_ids[1:])[:, None])[:, 0]
        assert lps[0] is None
        torch.testing.assert_close(torch.tensor(lps[1:]), expected, atol=1e-4, rtol=1e-4)
        assert scored.choices[0].text == tok.decode(prompt_ids)

        # chat logprobs: one entry per generated token, with alternatives
        lp = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4,
                                            temperature=0, logprobs=True, top_logprobs=2)
        content = lp.choices[0].logprobs.content
        assert len(content) == lp.usage.completion_tokens and len(content[0].top_logprobs) == 2
        assert content[0].top_logprobs[0].logprob >= content[0].top_logprobs[1].logprob

        n3 = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4, n=3,
                                            temperature=1.0, seed=5)
        assert [c.index for c in n3.choices] == [0, 1, 2]


def _greedy(n):
    from youtu.serve.sampling import SamplingParams
    return SamplingParams(temperature=0, max_tokens=n)


def test_errors_are_openai_shaped_and_the_server_keeps_serving(real_engine, tok, live_server):
    with live_server(create_app(real_engine, tok, _cfg())) as server:
        client = _client(server)
        msgs = [{"role": "user", "content": "hi"}]
        with pytest.raises(openai.NotFoundError) as e:
            client.chat.completions.create(model="gpt-4", messages=msgs)
        assert e.value.body["code"] == "model_not_found"
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=MODEL, messages=msgs, temperature=-1)
        assert "temperature" in e.value.body["message"]
        with pytest.raises(openai.BadRequestError, match="top_p"):
            client.chat.completions.create(model=MODEL, messages=msgs, top_p=7)
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x " * 1100}])
        assert e.value.body["code"] == "context_length_exceeded"
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=10_000)
        assert e.value.body["code"] == "context_length_exceeded"
        with pytest.raises(openai.BadRequestError, match="role"):
            client.chat.completions.create(model=MODEL, messages=[{"role": "robot", "content": "x"}])
        with pytest.raises(openai.BadRequestError, match="tool_choice"):
            client.chat.completions.create(model=MODEL, messages=msgs, tool_choice={
                "type": "function", "function": {"name": "nope"}}, tools=[WEATHER_TOOL])
        with pytest.raises(openai.BadRequestError, match="presence_penalty"):
            client.chat.completions.create(model=MODEL, messages=msgs, presence_penalty=1.0)
        with pytest.raises(openai.BadRequestError, match="messages"):
            client.chat.completions.create(model=MODEL, messages=[
                {"role": "user", "content": "a"}, {"role": "system", "content": "late system"}])

        bad = httpx.post(server.url + "/v1/chat/completions", content=b"{not json",
                         headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "JSON" in bad.json()["error"]["message"]
        assert bad.json()["error"]["type"] == "invalid_request_error"
        missing = httpx.post(server.url + "/v1/completions", json={"model": MODEL})
        assert missing.status_code == 400 and "prompt" in missing.json()["error"]["message"]
        assert httpx.get(server.url + "/v1/nothing").json()["error"]["type"] == "not_found_error"

        ok = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=3)
        assert ok.choices[0].finish_reason in ("stop", "length")
        assert httpx.get(server.url + "/health").json() == {"status": "ok"}
        metrics = httpx.get(server.url + "/metrics").text
        assert "youtu_generation_tokens_per_s" in metrics and "youtu_waiting" in metrics
        assert 'status="400"' in metrics and 'status="404"' in metrics


def test_api_key_auth(real_engine, tok, live_server):
    with live_server(create_app(real_engine, tok, _cfg(api_key="s3cret"))) as server:
        with pytest.raises(openai.AuthenticationError) as e:
            _client(server, "wrong").models.list()
        assert e.value.status_code == 401 and e.value.body["code"] == "invalid_api_key"
        assert httpx.post(server.url + "/v1/chat/completions", content=b"{bad").status_code == 401
        assert [m.id for m in _client(server, "s3cret").models.list().data] == [MODEL]
        assert httpx.get(server.url + "/health").status_code == 200  # probes need no key


# ---- scripted model: deterministic tool calls and thinking -------------------------------------

THINKING_TOOL_CALL = ('<think>\nThe user wants the weather; I should call the tool.\n</think>\n\n'
                      '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>')
FINAL_ANSWER = "<think>\nThe tool says sunny.\n</think>\n\nIt is sunny in Paris."


def _weather_script(tok):
    response = tok.special("<tool_response>")

    def script(history: list[int], thinking: bool) -> str:
        return FINAL_ANSWER if response in history else THINKING_TOOL_CALL
    return script


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_tool_call_round_trip_with_a_scripted_model(scripted, tok, live_server, stream):
    engine = Engine(scripted(_weather_script(tok)), max_batch=4, max_seq_len=512,
                    eos_ids=[tok.eos_id], detokenize=tok.decode)
    with live_server(create_app(engine, tok, _cfg(max_new_tokens=200))) as server:
        client = _client(server)
        messages = [{"role": "user", "content": "What is the weather in Paris?"}]

        def ask(msgs):
            if not stream:
                return client.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER_TOOL])
            chunks = list(client.chat.completions.create(model=MODEL, messages=msgs,
                                                         tools=[WEATHER_TOOL], stream=True))
            reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or ""
                                for c in chunks)
            content = "".join(c.choices[0].delta.content or "" for c in chunks)
            calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
            finish = chunks[-1].choices[0].finish_reason
            return reasoning.strip(), content, calls, finish

        first = ask(messages)
        if stream:
            reasoning, content, calls, finish = first
            assert reasoning == "The user wants the weather; I should call the tool."
            assert content == ""
            call = {"id": calls[0].id, "type": "function",
                    "function": {"name": calls[0].function.name, "arguments": calls[0].function.arguments}}
        else:
            msg = first.choices[0].message
            finish, calls = first.choices[0].finish_reason, msg.tool_calls
            assert msg.reasoning_content == "The user wants the weather; I should call the tool."
            assert msg.content is None
            call = calls[0].model_dump()
        assert finish == "tool_calls" and len(calls) == 1
        assert call["function"]["name"] == "get_weather"
        assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}

        messages += [{"role": "assistant", "content": None, "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 24 C"}]
        final = ask(messages)
        if stream:
            reasoning, content, calls, finish = final
            assert (reasoning, content, calls, finish) == ("The tool says sunny.", "It is sunny in Paris.", [], "stop")
        else:
            msg = final.choices[0].message
            assert msg.content == "It is sunny in Paris." and not msg.tool_calls
            assert msg.reasoning_content == "The tool says sunny."
            assert final.choices[0].finish_reason == "stop"


def test_thinking_flag_and_tool_choice(scripted, tok, live_server):
    seen_prompts: list[list[int]] = []

    def script(history, thinking):
        seen_prompts.append(history)
        return "<think>\nhmm\n</think>\n\nthought answer" if thinking else \
            "<think>\n\n</think>\n\nplain answer"

    engine = Engine(scripted(script), max_batch=2, max_seq_len=512, eos_ids=[tok.eos_id],
                    detokenize=tok.decode)
    with live_server(create_app(engine, tok, _cfg(max_new_tokens=100))) as server:
        client = _client(server)
        msgs = [{"role": "user", "content": "hello"}]
        off = client.chat.completions.create(
            model=MODEL, messages=msgs, extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        assert off.choices[0].message.content == "plain answer"
        ids, _ = encode_chat(tok, msgs, enable_thinking=False, add_generation_prompt=True)
        assert seen_prompts[-1] == ids[:ids.index(tok.special("<|Assistant|>")) + 1]
        assert off.usage.prompt_tokens == len(ids)  # the empty think pre-fill is in the prompt
        on = client.chat.completions.create(model=MODEL, messages=msgs)
        assert on.choices[0].message.content == "thought answer"
        assert on.choices[0].message.reasoning_content == "hmm"
        assert getattr(off.choices[0].message, "reasoning_content", None) is None
        on_ids, _ = encode_chat(tok, msgs, enable_thinking=True, add_generation_prompt=True)
        assert on.usage.prompt_tokens == len(on_ids) < len(ids)

        # tool_choice "none" hides the tools from the prompt
        with_tools = client.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER_TOOL])
        without = client.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER_TOOL],
                                                 tool_choice="none")
        assert without.usage.prompt_tokens == on.usage.prompt_tokens < with_tools.usage.prompt_tokens


def test_forced_tool_choice_prefills_the_call(scripted, tok, live_server):
    # The script continues whatever the server pre-filled: the arguments and the closing tag.
    def script(history, thinking):
        return '<think>\n\n</think>\n\n<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'

    engine = Engine(scripted(script), max_batch=2, max_seq_len=512, eos_ids=[tok.eos_id],
                    detokenize=tok.decode)
    with live_server(create_app(engine, tok, _cfg(max_new_tokens=100))) as server:
        reply = _client(server).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}})
        call = reply.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}
        assert reply.choices[0].finish_reason == "tool_calls"


def test_stop_strings_cut_the_text(scripted, tok, live_server):
    engine = Engine(scripted(lambda h, thinking: "<think>\n\n</think>\n\nalpha beta STOP gamma"), max_batch=2,
                    max_seq_len=512, eos_ids=[tok.eos_id], detokenize=tok.decode)
    with live_server(create_app(engine, tok, _cfg(max_new_tokens=100))) as server:
        client = _client(server)
        kw = dict(model=MODEL, messages=[{"role": "user", "content": "x"}], stop=["STOP"],
                  extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        assert client.chat.completions.create(**kw).choices[0].message.content == "alpha beta"
        streamed = "".join(c.choices[0].delta.content or ""
                           for c in client.chat.completions.create(stream=True, **kw))
        assert streamed.strip() == "alpha beta" and "S" not in streamed


# ---- hardening: limits, the event loop, disconnects, hostile input -----------------------------


def test_oversized_bodies_get_413_before_being_read(real_engine, tok, live_server):
    with live_server(create_app(real_engine, tok, _cfg(max_request_bytes=64 * 1024))) as server:
        big = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 200_000}]}
        r = httpx.post(server.url + "/v1/chat/completions", json=big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        assert "max_request_bytes" in r.json()["error"]["message"]

        def chunked():  # no Content-Length: refused once the bytes read pass the limit
            yield b'{"model": "tiny-chat", "messages": [{"role": "user", "content": "'
            for _ in range(50):
                yield b"y" * 4096
            yield b'"}]}'

        r = httpx.post(server.url + "/v1/chat/completions", content=chunked())
        assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"
        ok = _client(server).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert ok.usage.completion_tokens >= 1
        assert 'status="413"' in httpx.get(server.url + "/metrics").text


def test_tokenization_runs_off_the_event_loop(real_engine, tok, live_server, monkeypatch):
    import threading
    import time

    import youtu.serve.server as server_mod

    real_build = server_mod.build_chat_prompt
    entered = threading.Event()

    def slow_build(tok_, messages, *a):  # stands in for tokenizing a huge conversation
        if messages[0]["content"] == "slow":
            entered.set()
            time.sleep(3.0)
        return real_build(tok_, messages, *a)

    monkeypatch.setattr(server_mod, "build_chat_prompt", slow_build)
    with live_server(create_app(real_engine, tok, _cfg())) as server:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "slow"}], "max_tokens": 2}
        slow = threading.Thread(target=httpx.post, args=(server.url + "/v1/chat/completions",),
                                kwargs={"json": body, "timeout": 30})
        slow.start()
        assert entered.wait(10)
        start = time.monotonic()
        assert httpx.get(server.url + "/health", timeout=10).status_code == 200
        other = _client(server).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "fast"}], max_tokens=2)
        waited = time.monotonic() - start
        slow.join(30)
        assert other.usage.completion_tokens >= 1
        assert waited < 2.0, f"other clients waited {waited:.1f} s behind one slow request"


def test_abandoned_non_streaming_request_is_cancelled(real_engine, tok, live_server):
    import time

    with live_server(create_app(real_engine, tok, _cfg())) as server:
        aborted = real_engine.metrics()["requests_abort_total"]
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 980, "ignore_eos": True}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.url + "/v1/chat/completions", json=body, timeout=0.5)
        deadline = time.monotonic() + 10
        while real_engine.metrics()["running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        m = real_engine.metrics()
        assert m["running"] == 0 and m["free_rows"] == real_engine.max_batch
        assert m["requests_abort_total"] == aborted + 1  # cancelled, not run to its length


def _post(server, body, **kw):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(server.url + "/v1/chat/completions", content=raw,
                      headers={"content-type": "application/json", **kw.pop("headers", {})}, **kw)


@pytest.mark.parametrize("case", ["seed_too_big", "lone_surrogate", "tool_calls_not_a_list",
                                  "tool_call_without_name", "deep_nesting", "logit_bias",
                                  "response_format", "tool_without_id", "legacy_functions"])
def test_hostile_and_unsupported_requests_get_openai_4xx(real_engine, tok, live_server, case):
    msgs = [{"role": "user", "content": "hi"}]
    bodies = {
        "seed_too_big": ({"model": MODEL, "messages": msgs, "seed": 2**70}, "seed"),
        "lone_surrogate": (b'{"model": "tiny-chat", "messages": [{"role": "user", "content": '
                           b'"a\\ud800b"}]}', "surrogate"),
        "tool_calls_not_a_list": ({"model": MODEL, "messages": msgs + [
            {"role": "assistant", "content": None, "tool_calls": "get_weather"}]}, "tool_calls"),
        "tool_call_without_name": ({"model": MODEL, "messages": msgs + [
            {"role": "assistant", "tool_calls": [{"id": "c", "function": {"arguments": 3}}]}]},
            "tool_calls[0]"),
        "deep_nesting": (b'{"model": "tiny-chat", "messages": ' + b"[" * 100_000 + b"]" * 100_000
                         + b"}", "nested"),
        "logit_bias": ({"model": MODEL, "messages": msgs, "logit_bias": {"5": 10}}, "logit_bias"),
        "response_format": ({"model": MODEL, "messages": msgs,
                             "response_format": {"type": "json_object"}}, "response_format"),
        "tool_without_id": ({"model": MODEL, "messages": msgs + [
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "content": "42"}]}, "tool_call_id"),
        "legacy_functions": ({"model": MODEL, "messages": msgs, "functions": [{"name": "f"}]},
                             "functions"),
    }
    body, needle = bodies[case]
    with live_server(create_app(real_engine, tok, _cfg())) as server:
        r = _post(server, body)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert needle in err["message"] and err["type"] == "invalid_request_error"
        if case in ("logit_bias", "response_format", "legacy_functions"):
            assert err["param"] == case.replace("legacy_", "") and err["code"] == "unsupported_parameter"
        assert _post(server, {"model": MODEL, "messages": msgs, "max_tokens": 1}).status_code == 200


def test_neutral_values_of_unsupported_parameters_are_accepted(real_engine, tok, live_server):
    with live_server(create_app(real_engine, tok, _cfg())) as server:
        reply = _client(server).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2, seed=2**63 + 5,
            response_format={"type": "text"}, logit_bias={})
        assert reply.usage.completion_tokens >= 1


def test_auth_covers_metrics_and_survives_a_non_ascii_key(real_engine, tok, live_server):
    with live_server(create_app(real_engine, tok, _cfg(api_key="s3cret"))) as server:
        assert httpx.get(server.url + "/metrics").status_code == 401
        ok = httpx.get(server.url + "/metrics", headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and "youtu_running" in ok.text
        r = httpx.get(server.url + "/v1/models",
                      headers={"authorization": "Bearer schlüssel".encode("utf-8")})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_the_role_chunk_waits_for_admission(model, tok, live_server):
    import threading
    import time

    engine = Engine(model, max_batch=1, max_seq_len=1024, eos_ids=[tok.eos_id], detokenize=tok.decode)
    long = {"model": MODEL, "messages": [{"role": "user", "content": "a"}], "max_tokens": 980,
            "ignore_eos": True, "stream": True}
    short = {"model": MODEL, "messages": [{"role": "user", "content": "b"}], "max_tokens": 2,
             "stream": True}
    with live_server(create_app(engine, tok, _cfg())) as server, httpx.Client(timeout=30) as http:
        first_line: dict = {}

        def read_short():
            with http.stream("POST", server.url + "/v1/chat/completions", json=short) as r:
                first_line["text"] = next(line for line in r.iter_lines() if line)
                first_line["aborted"] = engine.metrics()["requests_abort_total"]

        with http.stream("POST", server.url + "/v1/chat/completions", json=long) as r:
            lines = r.iter_lines()
            assert '"role": "assistant"' in next(line for line in lines if line)
            aborted = engine.metrics()["requests_abort_total"]
            reader = threading.Thread(target=read_short)
            reader.start()
            time.sleep(0.5)
            assert not first_line, "the role chunk came while the only row was still busy"
        reader.join(20)  # leaving the long stream cancels it, which admits the short one
        assert '"role": "assistant"' in first_line["text"]
        assert first_line["aborted"] == aborted + 1


# ---- malformed and unoffered tool calls: the same reply streaming or not -----------------------

BROKEN_CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>'
UNOFFERED_CALL = '<tool_call>{"name": "rm_rf", "arguments": {"path": "/"}}</tool_call>'


@pytest.mark.parametrize("text,error", [(BROKEN_CALL, "tool call 0"),
                                        (UNOFFERED_CALL, "not one of the offered tools"),
                                        ("Let me look.\n\n" + BROKEN_CALL, "tool call 0")],
                         ids=["malformed", "unoffered", "after_text"])
def test_bad_tool_calls_come_back_as_text_and_an_error_in_both_modes(scripted, tok, live_server,
                                                                     text, error):
    engine = Engine(scripted(lambda h, thinking: "<think>\n\n</think>\n\n" + text), max_batch=2,
                    max_seq_len=512, eos_ids=[tok.eos_id], detokenize=tok.decode)
    with live_server(create_app(engine, tok, _cfg(max_new_tokens=200))) as server:
        client = _client(server)
        kw = dict(model=MODEL, messages=[{"role": "user", "content": "weather?"}],
                  tools=[WEATHER_TOOL], extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        plain = client.chat.completions.create(**kw)
        msg = plain.choices[0].message
        assert not msg.tool_calls and msg.content == text
        assert error in msg.model_extra["tool_call_errors"][0]
        assert plain.choices[0].finish_reason == "stop"

        chunks = list(client.chat.completions.create(stream=True, **kw))
        content = "".join(c.choices[0].delta.content or "" for c in chunks)
        errors = [e for c in chunks for e in (c.choices[0].delta.model_extra or {}).get("tool_call_errors", [])]
        assert not [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
        assert content == msg.content and errors == msg.model_extra["tool_call_errors"]
        assert chunks[-1].choices[0].finish_reason == plain.choices[0].finish_reason


def test_engine_and_endpoint_backends_report_bad_calls_alike(scripted, tok, live_server):
    from youtu.serve.client import EngineChat, OpenAIChat

    engine = Engine(scripted(lambda h, thinking: "<think>\n\n</think>\n\n" + UNOFFERED_CALL),
                    max_batch=2, max_seq_len=512, eos_ids=[tok.eos_id], detokenize=tok.decode)
    msgs = [{"role": "user", "content": "weather?"}]
    local = EngineChat(engine, tok, temperature=0).complete(msgs, tools=[WEATHER_TOOL], thinking=False)
    with live_server(create_app(engine, tok, _cfg(max_new_tokens=200))) as server:
        remote = OpenAIChat(server.url + "/v1", temperature=0).complete(
            msgs, tools=[WEATHER_TOOL], thinking=False)
    assert local.message["tool_call_errors"] == remote.message["tool_call_errors"]
    assert "rm_rf" in local.message["tool_call_errors"][0] and not remote.message.get("tool_calls")
    assert local.message["content"] == remote.message["content"] == UNOFFERED_CALL
    assert local.finish_reason == remote.finish_reason == "stop"
