"""The local judge server refuses what a client should not choose: real HTTP requests on
127.0.0.1 against an in-process server (uvicorn in a thread, a stub model), stopped after
each test."""

import ast
import http.client
import json
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mowe.scoring import judge_server as serve
from serving import InThreadServer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIMITS = serve.Limits(max_body_bytes=2000, max_tokens=64, max_messages=4, socket_timeout=5)


class Running(InThreadServer):
    """``serve.create_app`` served in a thread (:class:`serving.InThreadServer`)."""

    def __init__(self, complete, limits=LIMITS, **options):
        super().__init__(serve.create_app(complete, "stub", limits,
                                          api_key=options.pop("api_key", None),
                                          max_queue=options.pop("max_queue", 32)),
                         **options)


@pytest.fixture()
def server():
    """``(port, calls)``: a server whose model echoes; ``calls`` records each generation."""
    calls = []

    def complete(prompt, max_tokens, chat):
        calls.append((prompt, max_tokens, chat))
        return "echo"

    with Running(complete) as running:
        yield running.port, calls


def request(port, method, path, body=None, headers=None, raw=None):
    """``(status, JSON reply)`` of one request; ``raw`` bytes are sent as the body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def chat(port, **fields):
    body = {"model": "stub", "messages": [{"role": "user", "content": "hi"}], **fields}
    return request(port, "POST", "/v1/chat/completions", body)


def test_valid_requests_are_answered(server):
    port, calls = server
    status, reply = chat(port, max_tokens=8)
    assert status == 200 and reply["choices"][0]["message"]["content"] == "echo"
    status, reply = request(port, "POST", "/v1/completions", {"prompt": ["p"], "max_tokens": 64})
    assert status == 200 and reply["choices"][0]["text"] == "echo"
    assert calls == [([{"role": "user", "content": "hi"}], 8, True), ("p", 64, False)]


@pytest.mark.parametrize("max_tokens", [65, 10 ** 12, 0, -1, "8", 2.5, True, [8]])
def test_max_tokens_over_the_limit_or_ill_typed_is_refused(server, max_tokens):
    port, calls = server
    status, reply = chat(port, max_tokens=max_tokens)
    assert status == 400 and "max_tokens must be an integer from 1 to 64" in \
        reply["error"]["message"]
    assert calls == []


@pytest.mark.parametrize("messages, message", [
    ([{"role": "user", "content": "x"}] * 5, "too many messages: 5 (at most 4)"),
    ([], "non-empty list"),
    ("hello", "non-empty list"),
    ([{"role": "user", "content": ["x"]}], "messages[0]"),
    ([{"role": "user", "content": "x"}, {"role": "root", "content": "x"}], "messages[1]"),
    ([["user", "x"]], "messages[0]"),
])
def test_bad_message_lists_are_refused(server, messages, message):
    port, calls = server
    status, reply = chat(port, messages=messages)
    assert status == 400 and message in reply["error"]["message"]
    assert calls == []


def test_body_over_the_limit_is_refused_unread(server):
    port, calls = server
    status, reply = chat(port, padding="x" * 3000)
    assert status == 413 and "larger than 2000 bytes" in reply["error"]["message"]
    assert reply["error"]["code"] == "request_too_large"
    # a client announcing a huge body and sending none is answered at once, not waited on
    start = time.monotonic()
    status, reply = request(port, "POST", "/v1/completions", raw=b"",
                            headers={"Content-Length": str(10 ** 12)})
    assert status == 413 and time.monotonic() - start < 5
    assert calls == []


def raw_reply(port, data):
    """``(status, JSON reply)`` of raw request bytes sent on one connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")]
            if length and len(body) >= length[0]:
                break
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def chunked(body, size=500):
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
                    for i in range(0, len(body), size)) + b"0\r\n\r\n"


def test_chunked_bodies_are_accepted_and_counted_toward_the_limit(server):
    """No Content-Length to check up front: the bytes are counted as they arrive."""
    port, calls = server
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    status, reply = raw_reply(port, head + chunked(json.dumps({"prompt": "p" * 600}).encode()))
    assert status == 200 and reply["choices"][0]["text"] == "echo"
    assert calls == [("p" * 600, None, False)]
    status, reply = raw_reply(port, head + chunked(json.dumps({"prompt": "p" * 3000})
                                                   .encode()))
    assert status == 413 and "larger than 2000 bytes" in reply["error"]["message"]
    assert len(calls) == 1


@pytest.mark.parametrize("headers, raw, message", [
    # h11 refuses these before the app sees them; still a JSON error
    ({"Content-Length": "-5"}, b"", "Invalid HTTP request"),
    ({"Content-Length": "abc"}, b"", "Invalid HTTP request"),
    ({"Content-Length": "1, 2"}, b"", "Invalid HTTP request"),
    # an empty chunked body is read and found not to be JSON
    ({"Transfer-Encoding": "chunked"}, b"0\r\n\r\n", "not valid JSON"),
    ({"Content-Length": "7"}, b"not json", "not valid JSON"),
    ({"Content-Length": "3"}, b"[1]", "must be a JSON object"),
    ({"Content-Length": "2"}, b"\xff\xfe", "not valid JSON"),
])
def test_malformed_requests_get_a_4xx_json_error(server, headers, raw, message):
    port, calls = server
    status, reply = request(port, "POST", "/v1/chat/completions", raw=raw, headers=headers)
    assert status == 400 and message in reply["error"]["message"], reply
    assert calls == []


def test_missing_content_length_is_an_empty_body_and_refused(server):
    """Without Content-Length or chunked encoding an HTTP/1.1 request has no body: a JSON
    400, not a wait for bytes that never come."""
    port, calls = server
    status, reply = raw_reply(port, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 400 and "not valid JSON" in reply["error"]["message"]
    assert calls == []


def test_json_nested_deeply_is_refused_before_any_generation():
    calls = []
    with Running(lambda *args: calls.append(args) or "echo", serve.Limits()) as running:
        for raw in (b"[" * 100000 + b"]" * 100000,
                    b'{"a":' * 100000 + b"1" + b"}" * 100000,
                    # valid fields, and one nested past the limit (64) but not the parser's
                    b'{"prompt": "p", "x": ' + b"[" * 70 + b"]" * 70 + b"}"):
            status, reply = request(running.port, "POST", "/v1/completions", raw=raw,
                                    headers={"Content-Type": "application/json"})
            assert status == 400 and "deeper than" in reply["error"]["message"], reply
        assert calls == []
        assert request(running.port, "GET", "/health") == (200, {"status": "ok"})


def test_api_key_is_required_everywhere_but_health():
    calls = []

    def complete(prompt, max_tokens, chat):
        calls.append(prompt)
        return "echo"

    with Running(complete, api_key="s3cret") as running:
        port = running.port
        assert request(port, "GET", "/health") == (200, {"status": "ok"})
        status, reply = request(port, "GET", "/v1/models")
        assert status == 401 and reply["error"]["code"] == "invalid_api_key"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"},
                        {"Authorization": "Basic s3cret"}):
            status, reply = request(port, "POST", "/v1/completions", {"prompt": "p"},
                                    headers)
            assert status == 401 and reply["error"]["code"] == "invalid_api_key", headers
        assert calls == []
        status, reply = request(port, "POST", "/v1/completions", {"prompt": "p"},
                                {"Authorization": "Bearer s3cret"})
        assert status == 200 and reply["choices"][0]["text"] == "echo"

        from openai import AuthenticationError, OpenAI

        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="s3cret",
                        max_retries=0)
        completion = client.completions.create(model="stub", prompt="q", max_tokens=8)
        assert completion.choices[0].text == "echo" and completion.model == "stub"
        chat_reply = client.chat.completions.create(
            model="stub", messages=[{"role": "user", "content": "hi"}])
        assert chat_reply.choices[0].message.content == "echo"
        assert [m.id for m in client.models.list().data] == ["stub"]
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="nope",
                   max_retries=0).completions.create(model="stub", prompt="q")
        assert calls == ["p", "q", [{"role": "user", "content": "hi"}]]


class Gate:
    """A stub model that holds each generation until ``release`` is set."""

    def __init__(self):
        self.release = threading.Event()
        self.calls = []

    def __call__(self, prompt, max_tokens, chat):
        self.calls.append(prompt)
        assert self.release.wait(30)
        return "echo"


def wait_for(condition, seconds=10):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_more_than_max_queue_waiting_requests_get_503_at_once():
    gate = Gate()
    with Running(gate, max_queue=2) as running:
        generation = running.app.state.generation

        def ask(prompt):
            return request(running.port, "POST", "/v1/completions", {"prompt": prompt})

        with ThreadPoolExecutor(3) as pool:
            first = pool.submit(ask, "a")
            wait_for(lambda: generation.generated == 1)  # "a" generates, the rest wait
            waiting = [pool.submit(ask, "b")]
            wait_for(lambda: generation.waiting == 1)  # "b" queued before "c" is sent
            waiting.append(pool.submit(ask, "c"))
            wait_for(lambda: generation.waiting == 2)
            start = time.monotonic()
            status, reply = ask("d")
            assert status == 503 and reply["error"]["code"] == "server_busy"
            assert time.monotonic() - start < 5  # refused at once, not queued
            assert request(running.port, "GET", "/health") == (200, {"status": "ok"})
            gate.release.set()
            for future in [first, *waiting]:
                status, reply = future.result(30)
                assert status == 200 and reply["choices"][0]["text"] == "echo"
        assert gate.calls == ["a", "b", "c"]  # one at a time, in order; "d" never ran
        assert ask("e")[0] == 200  # the line is free again


def test_a_request_whose_client_left_while_waiting_is_not_generated():
    gate = Gate()
    with Running(gate) as running:
        generation = running.app.state.generation
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(request, running.port, "POST", "/v1/completions",
                                {"prompt": "a"})
            wait_for(lambda: generation.generated == 1)
            body = json.dumps({"prompt": "gone"}).encode()
            sock = socket.create_connection(("127.0.0.1", running.port), timeout=10)
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
            wait_for(lambda: generation.waiting == 1)
            sock.close()  # gone before its turn
            wait_for(lambda: generation.cancelled == 1)
            gate.release.set()
            assert first.result(30)[0] == 200
        time.sleep(0.5)
        assert gate.calls == ["a"] and generation.waiting == 0


def test_new_options_are_listed_in_the_help():
    result = subprocess.run([sys.executable, "-m", "mowe.scoring.judge_server", "--help"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0
    for option in ("--api_key", "--limit_concurrency", "--max_queue", "--timeout_keep_alive",
                   "--header_timeout", "--body_timeout", "--max_request_bytes",
                   "--max_tokens_limit", "--max_messages"):
        assert option in result.stdout, option


def test_bad_prompt_and_missing_fields_are_refused(server):
    port, calls = server
    for route, body, message in [
            ("/v1/completions", {"prompt": ["a", "b"]}, "prompt must be a string"),
            ("/v1/completions", {"prompt": {"x": 1}}, "prompt must be a string"),
            ("/v1/completions", {}, "missing field 'prompt'"),
            ("/v1/chat/completions", {}, "missing field 'messages'"),
            ("/v1/elsewhere", {}, "no route")]:
        status, reply = request(port, "POST", route, body)
        assert 400 <= status < 500 and message in reply["error"]["message"], (route, reply)
    assert calls == []
    assert request(port, "GET", "/health") == (200, {"status": "ok"})  # still serving


def test_a_request_naming_yaml_or_a_checkpoint_loads_nothing(server, tmp_path):
    """The ``model`` field (or any other) is never opened: a YAML file that would run
    code when loaded and a pickle that would run code when unpickled stay untouched."""
    port, calls = server
    marker = tmp_path / "ran"
    yaml_file = tmp_path / "evil.yaml"
    yaml_file.write_text(f"x: !apply:os.system ['touch {marker}']\n")

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    checkpoint = tmp_path / "evil.ckpt"
    checkpoint.write_bytes(pickle.dumps(Evil()))
    for name in (str(yaml_file), str(checkpoint), str(tmp_path)):
        status, reply = chat(port, model=name)
        assert status == 200 and reply["model"] == "stub"
        status, _ = request(port, "POST", "/v1/completions",
                            {"model": name, "prompt": "p", "hparams": name, "checkpoint": name})
        assert status == 200
    assert not marker.exists()
    assert all(name not in json.dumps(call) for call in calls)


def test_serve_module_cannot_load_yaml_or_pickles():
    """A guard against regressions: the network-facing module imports no YAML or pickle
    loader and calls no ``torch.load``."""
    path = os.path.join(REPO, "mowe", "scoring", "judge_server.py")
    tree = ast.parse(open(path, encoding="utf-8").read())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names} | {node.module.split(".")[0] for node in ast.walk(tree)
                                            if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"yaml", "hyperpyyaml", "ruamel", "pickle", "dill", "speechbrain"}
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert not {c for c in calls if c.endswith("torch.load") or c.endswith("load_hyperpyyaml")}
