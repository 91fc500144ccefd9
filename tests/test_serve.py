"""The local judge server refuses what a client should not choose: real HTTP requests on
127.0.0.1 against an in-process server (a stub model), stopped after each test."""

import ast
import http.client
import json
import os
import pickle
import socket
import threading

import pytest

from mowe.scoring import serve

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMITS = serve.Limits(max_body_bytes=2000, max_tokens=64, max_messages=4, socket_timeout=5)


@pytest.fixture()
def server():
    """``(port, calls)``: a server whose model echoes; ``calls`` records each generation."""
    calls = []

    def complete(prompt, max_tokens, chat):
        calls.append((prompt, max_tokens, chat))
        return "echo"

    httpd = serve.serve(complete, "stub", "127.0.0.1", 0, LIMITS)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], calls
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive()


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
    assert status == 413 and "over the limit of 2000 bytes" in reply["error"]["message"]
    # a client announcing a huge body and sending none is answered at once, not waited on
    status, reply = request(port, "POST", "/v1/completions", raw=b"",
                            headers={"Content-Length": str(10 ** 12)})
    assert status == 413
    assert calls == []


@pytest.mark.parametrize("headers, raw, code", [
    ({"Content-Length": "-5"}, b"", 400),
    ({"Content-Length": "abc"}, b"", 400),
    ({"Transfer-Encoding": "chunked"}, b"0\r\n\r\n", 411),
    ({"Content-Length": "7"}, b"not json", 400),
    ({"Content-Length": "3"}, b"[1]", 400),
    ({"Content-Length": "2"}, b"\xff\xfe", 400),
])
def test_malformed_requests_get_a_4xx_json_error(server, headers, raw, code):
    port, calls = server
    status, reply = request(port, "POST", "/v1/chat/completions", raw=raw, headers=headers)
    assert status == code and reply["error"]["message"]
    assert calls == []


def test_missing_content_length_is_refused(server):
    port, _ = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n")
        head = sock.recv(4096).decode()
    assert head.startswith("HTTP/1.1 411")


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
    path = os.path.join(REPO, "mowe", "scoring", "serve.py")
    tree = ast.parse(open(path, encoding="utf-8").read())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names} | {node.module.split(".")[0] for node in ast.walk(tree)
                                            if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"yaml", "hyperpyyaml", "ruamel", "pickle", "dill", "speechbrain"}
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert not {c for c in calls if c.endswith("torch.load") or c.endswith("load_hyperpyyaml")}
