"""The servers' limits against abuse (mowe/utils/http_server.py): API keys, concurrency,
slow clients, body size and depth, token budget, cancelled requests. In process: uvicorn
on 127.0.0.1 with a stand-in model, so each case takes seconds."""

import base64
import http.client
import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile

from fake_model import EchoModel, fake_state
from mowe.inference.server_app import create_app
from mowe.utils.http_server import warn_if_exposed
from serving import InThreadServer


def wav_b64(seconds=0.5):
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(int(16000 * seconds), dtype="float32"), 16000,
                    format="WAV")
    return base64.b64encode(buffer.getvalue()).decode()


def chat_body(**fields):
    return {"model": "mowe", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Transcribe."},
        {"type": "input_audio", "input_audio": {"data": wav_b64(), "format": "wav"}}]}],
        **fields}


class Running(InThreadServer):
    """uvicorn serving a fake-model app in a thread (:class:`serving.InThreadServer`);
    the batcher is stopped on exit."""

    def __init__(self, model=None, api_key=None, **options):
        self.state = fake_state(model or EchoModel())
        super().__init__(create_app(self.state, api_key=api_key,
                                    body_timeout=options.pop("body_timeout", 30.0)),
                         **options)

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self.state.batcher.stop()

    def request(self, method, path, body=None, headers=None, timeout=30):
        host, port = self.url.split("//")[1].split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        connection.request(method, path, body=data,
                           headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        try:
            return response.status, json.loads(payload)
        except ValueError:
            return response.status, payload


def test_api_key_is_required_everywhere_but_health():
    with Running(api_key="s3cret") as server:
        assert server.request("GET", "/health")[0] == 200
        status, payload = server.request("GET", "/v1/models")
        assert status == 401 and payload["error"]["code"] == "invalid_api_key"
        assert server.request("POST", "/v1/chat/completions", chat_body(),
                              {"Authorization": "Bearer wrong"})[0] == 401
        status, payload = server.request("POST", "/v1/chat/completions", chat_body(),
                                         {"Authorization": "Bearer s3cret"})
        assert status == 200 and "samples" in payload["choices"][0]["message"]["content"]
        from openai import AuthenticationError, OpenAI

        client = OpenAI(base_url=server.url + "/v1", api_key="s3cret", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["mowe"]
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0).models.list()


def test_binding_beyond_loopback_without_a_key_warns(caplog):
    assert warn_if_exposed("0.0.0.0", None, "test")
    assert not warn_if_exposed("127.0.0.1", None, "test")
    assert not warn_if_exposed("0.0.0.0", "key", "test")
    assert "without an API key" in caplog.text


def test_beyond_the_concurrency_limit_requests_get_503_and_the_rest_are_answered():
    with Running(EchoModel(delay=1.0), limit_concurrency=4) as server:
        def ask(_):
            return server.request("POST", "/v1/chat/completions", chat_body(), timeout=60)[0]

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(ask, range(16)))
        assert set(statuses) <= {200, 503}
        assert statuses.count(503) >= 1 and statuses.count(200) >= 1, statuses
        assert server.request("GET", "/health")[0] == 200


def test_a_client_sending_headers_byte_by_byte_is_cut_off():
    with Running(header_timeout=1.0) as server:
        host, port = server.url.split("//")[1].split(":")
        start = time.monotonic()
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            closed = False
            for byte in b"GET /health HTTP/1.1\r\nHost: x\r\n":
                try:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.2)
                except OSError:
                    closed = True
                    break
            if not closed:
                sock.settimeout(5)
                closed = sock.recv(100) == b""
        assert closed and time.monotonic() - start < 8
        assert server.request("GET", "/health")[0] == 200  # others are still served


def test_a_body_that_trickles_in_gets_408():
    with Running(body_timeout=1.0) as server:
        host, port = server.url.split("//")[1].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
            start = time.monotonic()
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
            assert received.startswith(b"HTTP/1.1 408"), received
            assert time.monotonic() - start < 5


def test_json_depth_and_token_budget():
    with Running() as server:
        status, payload = server.request("POST", "/v1/chat/completions",
                                         b"[" * 100000 + b"]" * 100000)
        assert status == 400 and "deeper than" in payload["error"]["message"]
        server.state.token_budget = 32
        status, payload = server.request("POST", "/v1/chat/completions",
                                         chat_body(max_tokens=20, num_beams=4))
        assert status == 400 and payload["error"]["code"] == "token_budget_exceeded"
        assert server.request("POST", "/v1/chat/completions",
                              chat_body(max_tokens=8, num_beams=4))[0] == 200


def test_a_request_whose_client_leaves_is_not_answered():
    model = EchoModel(delay=1.5)
    with Running(model) as server:
        host, port = server.url.split("//")[1].split(":")
        # the first request occupies the model; the second waits in the queue
        first = threading.Thread(target=server.request, args=(
            "POST", "/v1/chat/completions", chat_body()))
        first.start()
        time.sleep(0.3)
        body = json.dumps(chat_body()).encode()
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(0.3)
        sock.close()  # gone before its turn
        first.join(30)
        deadline = time.monotonic() + 10
        while server.state.cancelled < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)
        assert server.state.cancelled == 1
        assert model.answered == 1, "the abandoned request was never run"
