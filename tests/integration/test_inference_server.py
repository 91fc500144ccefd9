"""``python -m mowe.inference.model_server``: the real ``openai`` client on localhost, batched concurrent
requests equal to the offline answers, and a 4xx JSON error for every kind of bad request.
"""

import base64
import http.client
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile

from serving import Process, audio_message, openai_client, start_server


@pytest.fixture(scope="module")
def server(tiny_package):
    process, url = start_server(tiny_package["package"], "--max_batch_size", "8",
                                "--max_wait_ms", "50", "--max_body_mb", "1",
                                "--max_audio_seconds", "5", "--max_tokens", "64")
    yield url
    assert process.stop() in (0, -15)


def test_openai_client_models_health_and_one_answer(server, tiny_package):
    client = openai_client(server)
    models = client.models.list().data
    assert [m.id for m in models] == ["mowe"]
    row = tiny_package["hyps"][0]
    reply = client.chat.completions.create(model="mowe", messages=[
        {"role": "system", "content": "ignored: the model has its own system prompt"},
        audio_message(row["wav"], row["instruction"])])
    assert reply.choices[0].message.content == row["hyp"]
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.model_extra["mowe"]["selected"] == row["selected"]
    connection = http.client.HTTPConnection(server.split("//")[1], timeout=30)
    connection.request("GET", "/health")
    health = json.loads(connection.getresponse().read())
    assert health["status"] == "ok" and health["model"] == "mowe"


def test_32_concurrent_requests_are_batched_and_equal_the_offline_answers(server,
                                                                          tiny_package):
    import openai

    rows = tiny_package["hyps"]
    client = openai_client(server)
    jobs = [rows[i % len(rows)] for i in range(32)]

    def ask(row):
        reply = client.chat.completions.create(
            model="mowe", messages=[audio_message(row["wav"], row["instruction"])])
        return reply.choices[0].message.content

    start = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(ask, jobs))
    elapsed = time.monotonic() - start
    assert answers == [row["hyp"] for row in jobs]
    connection = http.client.HTTPConnection(server.split("//")[1], timeout=30)
    connection.request("GET", "/health")
    health = json.loads(connection.getresponse().read())
    assert health["max_batch"] > 1, health  # concurrent requests shared forward passes
    print(f"32 concurrent requests answered in {elapsed:.1f} s; batches: {health}")
    # a bad request through the real client is an exception with the server's message
    with pytest.raises(openai.BadRequestError, match="no audio"):
        client.chat.completions.create(model="mowe", messages=[
            {"role": "user", "content": "Transcribe the speech."}])
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.chat.completions.create(model="gpt-4o", messages=[
            audio_message(jobs[0]["wav"], "Transcribe.")])


def wav_base64(seconds, rate=16000):
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(int(seconds * rate), dtype="float32"), rate,
                    format="WAV")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def chat(content, **fields):
    return {"model": "mowe", "messages": [{"role": "user", "content": content}], **fields}


def audio_part(data, audio_format="wav"):
    return {"type": "input_audio", "input_audio": {"data": data, "format": audio_format}}


TEXT = {"type": "text", "text": "Transcribe the speech."}
NESTED = []
for _ in range(200):  # deeper than the servers' 64 levels
    NESTED = [NESTED]
GOOD_AUDIO = audio_part(wav_base64(1.0))
BAD_REQUESTS = {
    "no audio": (chat([TEXT]), 400, "missing_audio"),
    "no instruction": (chat([GOOD_AUDIO]), 400, "missing_instruction"),
    "undecodable audio": (chat([TEXT, audio_part(base64.b64encode(b"not audio at all")
                                                 .decode())]), 400, "invalid_audio"),
    "invalid base64": (chat([TEXT, audio_part("@@@not base64@@@")]), 400, "invalid_audio"),
    "audio too long": (chat([TEXT, audio_part(wav_base64(6.0))]), 400, "audio_too_long"),
    "two clips": (chat([TEXT, GOOD_AUDIO, GOOD_AUDIO]), 400, "too_many_clips"),
    "messages not a list": ({"model": "mowe", "messages": "hello"}, 400, "invalid_request"),
    "content a number": (chat(42), 400, "invalid_request"),
    "part not an object": (chat([TEXT, "audio.wav"]), 400, "invalid_request"),
    "unknown part type": (chat([TEXT, {"type": "image_url", "image_url": {}}]), 400,
                          "invalid_request"),
    "input_audio a string": (chat([TEXT, {"type": "input_audio", "input_audio": "x"}]), 400,
                             "invalid_request"),
    "data a number": (chat([TEXT, audio_part(123)]), 400, "invalid_request"),
    "max_tokens a string": (chat([TEXT, GOOD_AUDIO], max_tokens="12"), 400, "invalid_request"),
    "max_tokens too large": (chat([TEXT, GOOD_AUDIO], max_tokens=100000), 400,
                             "invalid_request"),
    "temperature a string": (chat([TEXT, GOOD_AUDIO], temperature="hot"), 400,
                             "invalid_request"),
    "top_p out of range": (chat([TEXT, GOOD_AUDIO], top_p=3), 400, "invalid_request"),
    "too many messages": ({"model": "mowe", "messages": [{"role": "user", "content": "x"}]
                           * 40}, 400, "invalid_request"),
    "bad role": ({"model": "mowe", "messages": [{"role": "robot", "content": "x"}]}, 400,
                 "invalid_request"),
    "stream not a boolean": (chat([TEXT, GOOD_AUDIO], stream="yes"), 400, "invalid_request"),
    "deeply nested": (chat([TEXT, GOOD_AUDIO], extra=NESTED), 400, "invalid_request"),
    "n > 1": (chat([TEXT, GOOD_AUDIO], n=2), 400, "invalid_request"),
    "unknown model": ({**chat([TEXT, GOOD_AUDIO]), "model": "gpt-4o"}, 404,
                      "model_not_found"),
    "body not an object": ([1, 2, 3], 400, "invalid_request"),
}


def post(url, body, headers=None):
    """POST raw bytes; returns (status, parsed JSON body)."""
    connection = http.client.HTTPConnection(url.split("//")[1], timeout=120)
    connection.request("POST", "/v1/chat/completions", body=body,
                       headers={"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    payload = json.loads(response.read())
    connection.close()
    return response.status, payload


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_bad_request_gets_its_4xx_json_error(server, name):
    body, status, code = BAD_REQUESTS[name]
    got, payload = post(server, json.dumps(body).encode())
    assert got == status, payload
    assert payload["error"]["code"] == code and payload["error"]["message"], payload


def test_raw_http_errors(server):
    status, payload = post(server, b"{not json")
    assert status == 400 and "not valid JSON" in payload["error"]["message"]
    big = json.dumps(chat([TEXT, audio_part("A" * (2 * 1024 * 1024))])).encode()
    status, payload = post(server, big)  # over --max_body_mb 1: refused unread
    assert status == 413 and payload["error"]["code"] == "request_too_large"
    # a chunked body has no Content-Length: it is counted as it arrives
    connection = http.client.HTTPConnection(server.split("//")[1], timeout=30)
    connection.putrequest("POST", "/v1/chat/completions")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.putheader("Content-Type", "application/json")
    connection.endheaders()
    chunk = b"[" * 65536
    try:
        for _ in range(24):  # 1.5 MiB, over the 1 MiB limit
            connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        connection.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed before the body ended
    response = connection.getresponse()
    assert response.status == 413 and json.loads(response.read())["error"]
    # nesting 100,000 deep is a 400, not a crashed handler
    status, payload = post(server, b"[" * 100000 + b"]" * 100000)
    assert status == 400 and "deeper than" in payload["error"]["message"]
    for method, path, expected in (("GET", "/v1/chat/completions", 405),
                                   ("GET", "/nothing", 404), ("POST", "/v1/embeddings", 404)):
        connection = http.client.HTTPConnection(server.split("//")[1], timeout=30)
        connection.request(method, path, body=b"{}" if method == "POST" else None)
        response = connection.getresponse()
        assert response.status == expected and json.loads(response.read())["error"]
    # the server is still healthy after all of this
    connection = http.client.HTTPConnection(server.split("//")[1], timeout=30)
    connection.request("GET", "/health")
    assert connection.getresponse().status == 200


def test_unreadable_content_length_closes_the_connection(server):
    """The unread body must not be taken for a second request: one JSON 400, then EOF."""
    import socket

    host, port = server.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: ten\r\n\r\nGET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"connection: close" in head.lower(), received
    assert received.count(b"HTTP/1.1 ") == 1, received
    assert "Invalid HTTP request" in json.loads(body)["error"]["message"]


def test_streaming_and_transcriptions_through_the_openai_client(server, tiny_package):
    """Chat with stream=True (server-sent events) and /v1/audio/transcriptions answer what
    decode.py answered offline for the same clip and instruction."""
    client = openai_client(server)
    row = tiny_package["hyps"][0]
    stream = client.chat.completions.create(
        model="mowe", messages=[audio_message(row["wav"], row["instruction"])], stream=True,
        stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(pieces) == row["hyp"]
    assert finish in ("stop", "length") and usage.completion_tokens >= 1
    with open(row["wav"], "rb") as handle:
        text = client.audio.transcriptions.create(model="mowe", file=handle,
                                                  prompt=row["instruction"],
                                                  response_format="text")
    assert text.strip() == row["hyp"].strip()
    with open(row["wav"], "rb") as handle:
        result = client.audio.transcriptions.create(model="mowe", file=handle,
                                                    prompt=row["instruction"])
    assert result.text == row["hyp"]
    with open(row["wav"], "rb") as handle:
        verbose = client.audio.transcriptions.create(model="mowe", file=handle,
                                                     prompt=row["instruction"],
                                                     response_format="verbose_json")
    assert verbose.text == row["hyp"] and verbose.duration > 0
    import openai

    with open(row["wav"], "rb") as handle, pytest.raises(openai.BadRequestError,
                                                         match="response_format"):
        client.audio.transcriptions.create(model="mowe", file=handle, response_format="srt")


def test_a_failing_model_gets_a_500_json_error_and_the_server_lives_on():
    """Any model failure (not only refused options) answers the request, in process."""
    from fastapi.testclient import TestClient

    from fake_model import fake_state
    from mowe.inference.server_app import create_app

    class FailingModel:
        def answer_signals(self, *args, **kwargs):
            raise RuntimeError("out of memory")

    state = fake_state(FailingModel())
    try:
        client = TestClient(create_app(state))
        for _ in range(2):  # the server keeps answering
            response = client.post("/v1/chat/completions", json=chat([TEXT, GOOD_AUDIO]))
            assert response.status_code == 500, response.text
            payload = response.json()
            assert payload["error"]["code"] == "model_error"
            assert "RuntimeError: out of memory" in payload["error"]["message"]
    finally:
        state.batcher.stop()


def test_server_stops_itself_after_max_requests(tiny_package):
    process = Process(["-m", "mowe.inference.model_server", "--model", str(tiny_package["package"]),
                       "--port", "0", "--max_requests", "2", "--stop_after", "300"])
    url = process.wait_for("serving ").split(" on ", 1)[1].split()[0]
    for _ in range(2):
        connection = http.client.HTTPConnection(url.split("//")[1], timeout=30)
        connection.request("GET", "/v1/models")
        assert connection.getresponse().status == 200
    assert process.process.wait(timeout=60) == 0
