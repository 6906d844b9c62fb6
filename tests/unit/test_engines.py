"""The Generator protocol's requests and sampling parameters, and the OpenAI HTTP engine against a fake server."""

from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from intrain.engines import (
    EngineError,
    Generator,
    OpenAIGenerator,
    Request,
    SamplingParams,
    derive_seed,
)

USER = [{"role": "user", "content": "What is 12 + 7? Put the final answer in \\boxed{}."}]


def chat(text: str) -> Request:
    return Request(messages=[{"role": "user", "content": text}])


# --------------------------------------------------------------------------------------------
# Request / SamplingParams
# --------------------------------------------------------------------------------------------


def test_request_validation():
    with pytest.raises(ValueError):
        Request()
    with pytest.raises(ValueError):
        Request(messages=USER, prompt="x")
    with pytest.raises(ValueError):
        Request(prompt="x", continue_final=True)
    with pytest.raises(ValueError):
        Request(messages=USER, continue_final=True)  # last message is not the assistant's
    with pytest.raises(ValueError):
        Request(messages=USER, n=0)


def test_sampling_params_validation_and_stop_normalisation():
    assert SamplingParams(stop="\n\n").stop == ("\n\n",)
    assert SamplingParams(stop=["a", "b"]).stop == ("a", "b")
    assert SamplingParams(temperature=0).greedy
    for bad in (dict(temperature=-1), dict(top_p=0), dict(top_k=-1), dict(max_tokens=0), dict(stop=("",))):
        with pytest.raises(ValueError):
            SamplingParams(**bad)


def test_derive_seed_is_stable_and_spread():
    assert derive_seed(0, 1) == derive_seed(0, 1)
    seeds = {derive_seed(s, i) for s in range(4) for i in range(50)}
    assert len(seeds) == 200
    assert all(0 <= s < 2**31 for s in seeds)


# --------------------------------------------------------------------------------------------
# OpenAIGenerator against a fake OpenAI-compatible server on loopback
# --------------------------------------------------------------------------------------------


class FakeServer:
    """A tiny OpenAI-compatible server. Records bodies (with lower-cased header names); can fail
    the first calls with a status (asking for a 10 ms wait before the retry) or answer late."""

    def __init__(self):
        self.bodies: list[tuple[str, dict, dict]] = []
        self.fail_first: int = 0
        self.fail_status: int = 503
        self.delay_s: float = 0.0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.bodies.append((self.path, body, {k.lower(): v for k, v in self.headers.items()}))
                    fail = server.fail_first > 0
                    server.fail_first -= 1 if fail else 0
                if fail:
                    self._send(server.fail_status, {"error": {"message": "model is busy"}}, {"retry-after-ms": "10"})
                    return
                time.sleep(server.delay_s + random.random() * 0.02)  # finish out of order under concurrency
                self._send(200, server.respond(self.path, body))

            def _send(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def respond(self, path, body):
        if path == "/v1/chat/completions":
            source = body["messages"][-1]["content"]
        elif path == "/v1/completions":
            source = body["prompt"]
        else:
            return {"error": "not found"}
        choices = []
        for i in range(body.get("n", 1)):
            text = f"{source}|{i}"
            finish = "length" if body["max_tokens"] < 4 else "stop"
            choice = {"index": i, "finish_reason": finish}
            if path.endswith("chat/completions"):
                choice["message"] = {"role": "assistant", "content": text}
                if body.get("logprobs"):
                    choice["logprobs"] = {"content": [{"token": "a", "logprob": -0.5}, {"token": "b", "logprob": -1.5}]}
            else:
                choice["text"] = text
                if body.get("logprobs"):
                    choice["logprobs"] = {"tokens": ["a", "b"], "token_logprobs": [-0.25, -0.75]}
            choices.append(choice)
        choices.reverse()  # servers may list choices in any order; index decides
        return {"choices": choices, "usage": {"prompt_tokens": len(source), "completion_tokens": 2 * len(choices)}}

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def fake_server():
    server = FakeServer()
    yield server
    server.close()


def make_client(server, **kw) -> OpenAIGenerator:
    return OpenAIGenerator(server.url, model="fake-model", **kw)


def test_openai_chat_and_raw_requests(fake_server, monkeypatch):
    monkeypatch.setenv("INTRAIN_TEST_KEY", "sk-test")
    client = make_client(fake_server, api_key_env="INTRAIN_TEST_KEY", max_concurrency=4)
    assert isinstance(client, Generator) and client.tokenizer is None
    reqs = [
        chat("q0"),
        Request(prompt="raw1", n=2),
        Request(messages=USER + [{"role": "assistant", "content": "Step 1:"}], continue_final=True, n=3),
    ] + [chat(f"q{i}") for i in range(3, 12)]
    sp = SamplingParams(temperature=0.7, top_p=0.8, top_k=20, max_tokens=64, seed=5, stop=("\n\n",))
    progress = []
    out = client.generate(reqs, sp, on_progress=lambda s, t: progress.append((s, t)))

    assert [len(o) for o in out] == [r.n for r in reqs]
    assert [c.text for c in out[1]] == ["raw1|0", "raw1|1"]
    assert [c.text for c in out[2]] == ["Step 1:|0", "Step 1:|1", "Step 1:|2"]
    assert [o[0].text for o in out[3:]] == [f"q{i}|0" for i in range(3, 12)]  # input order kept
    assert all(c.token_ids == [] and c.finish_reason == "stop" and c.logprobs is None for o in out for c in o)
    assert out[1][0].prompt_tokens == len("raw1")
    assert sum(s for s, _ in progress) == sum(r.n for r in reqs)
    assert sum(t for _, t in progress) == 2 * sum(r.n for r in reqs)

    by_path = {}
    for path, body, headers in fake_server.bodies:
        by_path.setdefault(path, []).append(body)
        assert headers.get("authorization") == "Bearer sk-test"
    (raw,) = by_path["/v1/completions"]
    assert raw["prompt"] == "raw1" and raw["n"] == 2 and "messages" not in raw
    chats = by_path["/v1/chat/completions"]
    assert len(chats) == len(reqs) - 1
    for body in chats:
        assert body["model"] == "fake-model"
        assert (body["temperature"], body["top_p"], body["top_k"], body["max_tokens"]) == (0.7, 0.8, 20, 64)
        assert body["stop"] == ["\n\n"]
    cont = [b for b in chats if b.get("continue_final_message")]
    assert len(cont) == 1 and cont[0]["add_generation_prompt"] is False and cont[0]["n"] == 3
    assert cont[0]["messages"][-1] == {"role": "assistant", "content": "Step 1:"}
    plain = [b for b in chats if not b.get("continue_final_message")]
    assert all("add_generation_prompt" not in b for b in plain)
    # per-request seeds: derived from the call seed and the position, all distinct
    seeds = [b["seed"] for _, b, _ in fake_server.bodies]
    assert len(set(seeds)) == len(reqs)
    assert sorted(seeds) == sorted(derive_seed(5, i) for i in range(len(reqs)))


def test_openai_optional_fields_and_logprobs(fake_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    client = make_client(fake_server, extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    out = client.generate([chat("a"), Request(prompt="b")], SamplingParams(max_tokens=2, logprobs=True))
    assert out[0][0].logprobs == [-0.5, -1.5] and out[1][0].logprobs == [-0.25, -0.75]
    assert out[0][0].finish_reason == "length"
    bodies = {p: (b, h) for p, b, h in fake_server.bodies}
    chat_body, headers = bodies["/v1/chat/completions"]
    assert "authorization" not in headers
    assert "top_k" not in chat_body and "stop" not in chat_body  # off -> not sent
    assert chat_body["logprobs"] is True and chat_body["chat_template_kwargs"] == {"enable_thinking": False}
    assert bodies["/v1/completions"][0]["logprobs"] == 1


@pytest.mark.parametrize("status", [500, 503, 429])
def test_openai_retries_5xx_and_429_then_succeeds(fake_server, status):
    fake_server.fail_first, fake_server.fail_status = 2, status
    out = make_client(fake_server).generate([chat("retry")], SamplingParams(max_tokens=8))
    assert out[0][0].text == "retry|0"
    assert len(fake_server.bodies) == 3


def test_openai_gives_up_after_retries_naming_the_url(fake_server):
    fake_server.fail_first = 100
    with pytest.raises(EngineError, match=r"127\.0\.0\.1.*/v1/chat/completions.*after 4 attempts.*busy"):
        make_client(fake_server).generate([chat("x")], SamplingParams())
    assert len(fake_server.bodies) == 4


def test_openai_4xx_fails_fast(fake_server):
    fake_server.fail_first, fake_server.fail_status = 1, 400
    with pytest.raises(EngineError, match="HTTP 400: model is busy"):
        make_client(fake_server).generate([chat("x")], SamplingParams())
    assert len(fake_server.bodies) == 1


def test_openai_connection_refused_names_the_url():
    server = FakeServer()
    url = server.url
    server.close()  # nothing listens on that port any more
    client = OpenAIGenerator(url, model="m", timeout_s=5)
    client._retries = 1  # one retry, after the client's first backoff (~0.5 s)
    with pytest.raises(EngineError, match=url.replace(".", r"\.") + "/completions failed after 2 attempts: Connect"):
        client.generate([Request(prompt="x")], SamplingParams())


def test_openai_timeout_is_retried_then_one_clear_error(fake_server):
    fake_server.delay_s = 1.0
    client = make_client(fake_server, timeout_s=0.2)
    client._retries = 1
    start = time.monotonic()
    with pytest.raises(EngineError) as info:
        client.generate([chat("slow")], SamplingParams())
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "\n" not in message
    assert message == f"request to {fake_server.url}/chat/completions failed after 2 attempts: no answer within 0.2 s"
    assert len(fake_server.bodies) == 2


def test_openai_engine_without_openai_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openai", None)  # makes `import openai` raise ImportError
    with pytest.raises(ImportError, match=r"needs the 'openai' extra: pip install 'intrain\[openai\]'"):
        OpenAIGenerator("http://127.0.0.1:9/v1", model="m")
