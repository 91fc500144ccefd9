"""Helpers for tests that start ``python -m mowe.inference.model_server`` / ``python -m mowe.inference.web_demo``: a
subprocess on 127.0.0.1 that stops itself (``--stop_after``), and OpenAI-style requests."""

import base64
import os
import queue
import socket
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=REPO, GRADIO_ANALYTICS_ENABLED="False")


def free_port():
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A server subprocess; ``wait_for(text)`` returns the first stdout line holding it."""

    def __init__(self, args, startup_timeout=600):
        self.process = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, env=ENV,
                                        cwd=REPO)
        self.lines, self.output = queue.Queue(), []
        self.startup_timeout = startup_timeout
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text):
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("the server exited:\n" + "".join(self.output)[-3000:])
            if text in line:
                return line
        raise AssertionError(f"no {text!r} within {self.startup_timeout} s:\n"
                             + "".join(self.output)[-3000:])

    def stop(self, timeout=30):
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout)


def start_server(model, *extra):
    """``python -m mowe.inference.model_server`` on a free port (stops itself after 15 min at most).
    Returns ``(process, base_url)``."""
    server = Process(["-m", "mowe.inference.model_server", "--model", str(model), "--port", "0",
                      "--stop_after", "900", *extra])
    line = server.wait_for("serving ")
    url = line.split(" on ", 1)[1].split()[0]
    return server, url


def audio_message(wav_path, instruction):
    """An OpenAI chat message with a text part and an ``input_audio`` part (base64 wav)."""
    with open(wav_path, "rb") as handle:
        data = base64.b64encode(handle.read()).decode("ascii")
    return {"role": "user", "content": [
        {"type": "text", "text": instruction},
        {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}]}


def openai_client(url):
    from openai import OpenAI

    return OpenAI(base_url=url + "/v1", api_key="not-needed", timeout=600, max_retries=0)


class InThreadServer:
    """An ASGI ``app`` served by uvicorn (``mowe.utils.http_server.run_server``) on 127.0.0.1,
    a free port, in a thread: ``port``, ``url``; stopped on exit. ``options`` go to
    ``run_server`` (limit_concurrency, header_timeout ...)."""

    def __init__(self, app, **options):
        self.app, self.options = app, options
        self.ready = threading.Event()
        self.server = None

    def __enter__(self):
        from mowe.utils.http_server import run_server

        def started(host, port):
            self.port, self.url = port, f"http://{host}:{port}"
            self.ready.set()

        def hook(server):
            self.server = server

        self.thread = threading.Thread(target=run_server, daemon=True, kwargs=dict(
            app=self.app, host="127.0.0.1", port=0, on_started=started, state_hook=hook,
            **self.options))
        self.thread.start()
        assert self.ready.wait(30), "the server did not start"
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive()
