"""The HTTP side of ``python -m mowe.serve``: routes, body limits, JSON errors.

Standard-library ``ThreadingHTTPServer`` (no web framework to install): each request
runs in its own thread, reads at most ``Limits.max_body_bytes``, decodes its clip, and
waits for the :class:`~mowe.server.batching.DynamicBatcher`. Every refusal is a JSON
error with a 4xx status (503 when the queue is full); nothing a request says names a
file, a YAML or a checkpoint to load.
"""

import json
import logging
import socket
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeoutError
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mowe.data.audio import SAMPLE_RATE, AudioError, read_audio_bytes
from mowe.server.batching import BusyError
from mowe.server.protocol import (RequestError, chat_response, models_response,
                                  parse_chat_request)

logger = logging.getLogger(__name__)


class ModelServer(ThreadingHTTPServer):
    """The server object: the model, its batcher, limits and the request budget.

    Arguments
    ---------
    address : (str, int)
        Host and port (port 0: a free one; see ``server_address`` after binding).
    inference : mowe.inference.AudioLLMInference
    batcher : mowe.server.batching.DynamicBatcher
    limits : mowe.server.protocol.Limits
    model_name : str
        Name clients use (``/v1/models``).
    max_requests : int, optional
        Stop after answering this many requests (tests, smoke checks).
    request_timeout : float
        Seconds a request waits for its answer before a 503.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, inference, batcher, limits, model_name, max_requests=None,
                 request_timeout=300.0):
        super().__init__(address, Handler)
        self.inference = inference
        self.batcher = batcher
        self.limits = limits
        self.model_name = model_name
        self.max_requests = max_requests
        self.request_timeout = request_timeout
        self.created = time.time()
        self.handled = 0
        self._count_lock = threading.Lock()

    def count_request(self):
        """Count a finished request; shut down once ``max_requests`` are done."""
        with self._count_lock:
            self.handled += 1
            done = self.max_requests is not None and self.handled >= self.max_requests
        if done:
            logger.info("answered %d requests (--max_requests): stopping", self.handled)
            threading.Thread(target=self.shutdown, daemon=True).start()


class Handler(BaseHTTPRequestHandler):
    """Routes: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions``."""

    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a slow client may take to send its request
    server_version = "mowe-serve"

    def log_message(self, fmt, *args):
        logger.info("%s " + fmt, self.address_string(), *args)

    def _send(self, status, payload, close=False):
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)
        if close:  # every closing answer leaves the request body unread
            self._linger()

    def _fail(self, error, close=False):
        self._send(error.status, error.body(), close=close)

    def _finish(self):
        self.server.count_request()

    # ------------------------------------------------------------------ routes
    def do_GET(self):
        try:
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/health":
                sizes = list(self.server.batcher.batch_sizes)
                self._send(200, {"status": "ok", "model": self.server.model_name,
                                 "requests": self.server.handled, "batches": len(sizes),
                                 "max_batch": max(sizes, default=0),
                                 "queued": self.server.batcher.queue.qsize()})
            elif path == "/v1/models":
                self._send(200, models_response(self.server.model_name, self.server.created))
            elif path == "/v1/chat/completions":
                self._fail(RequestError(405, "use POST for /v1/chat/completions"))
            else:
                self._fail(RequestError(404, f"no route {path or '/'}: this server answers "
                                             "/v1/chat/completions, /v1/models and /health"))
        finally:
            self._finish()

    def do_POST(self):
        try:
            path = self.path.split("?", 1)[0].rstrip("/")
            if path != "/v1/chat/completions":
                self._fail(RequestError(404 if path not in ("/health", "/v1/models") else 405,
                                        f"POST {path or '/'} is not served"), close=True)
                return
            self._body_read = False
            try:
                body = self._read_json()
                self._send(200, self._chat(body))
            except RequestError as error:
                # a body left unread (411, 413, a bad or short Content-Length) would be
                # read as the next request: close the connection after the answer
                self._fail(error, close=not self._body_read)
        except (BrokenPipeError, ConnectionResetError):
            logger.info("client %s went away", self.address_string())
        finally:
            self._finish()

    def do_PUT(self):
        self._reject_method()

    def do_DELETE(self):
        self._reject_method()

    def _reject_method(self):
        try:
            self._fail(RequestError(405, f"{self.command} is not allowed"), close=True)
        finally:
            self._finish()

    # ------------------------------------------------------------------ helpers
    def _linger(self, total_seconds=5.0, idle_seconds=0.5):
        """Lingering close after an answer sent without reading the body: stop writing,
        then read and discard what the client still sends (until it stops, has sent its
        declared Content-Length, is idle ``idle_seconds`` or ``total_seconds`` passed).
        Closing a socket that holds unread data resets the connection, and the reset can
        reach the client before it has read the error response (it sees a broken pipe
        instead of the 413); nginx and Apache linger the same way. By hand because
        ``http.server`` has no such option."""
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        try:
            expected = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            expected = -1
        if expected == 0 and not chunked:
            return  # no body to wait for
        expected = max(expected, 0)  # 0: chunked or an unreadable length: until quiet
        try:
            self.wfile.flush()
        except OSError:
            return
        sock, received = self.connection, 0
        deadline = time.monotonic() + total_seconds
        try:
            sock.shutdown(socket.SHUT_WR)
            while time.monotonic() < deadline and (not expected or received < expected):
                sock.settimeout(min(idle_seconds, max(0.01, deadline - time.monotonic())))
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                received += len(chunk)
        except OSError:  # socket.timeout included: the client went quiet or away
            pass

    def _read_json(self):
        limits = self.server.limits
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or length is None:
            raise RequestError(411, "send the body with a Content-Length header")
        try:
            length = int(length)
        except ValueError:
            raise RequestError(400, "Content-Length is not a number") from None
        if length < 0:
            raise RequestError(400, "Content-Length is negative")
        if length > limits.max_body_bytes:
            raise RequestError(413, f"the request body is {length} bytes; at most "
                                    f"{limits.max_body_bytes} are accepted "
                                    f"(--max_body_mb)")
        raw = self.rfile.read(length)
        if len(raw) != length:
            raise RequestError(400, "the request body ended early")
        self._body_read = True
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RequestError(400, f"the request body is not valid JSON ({error})") from None

    def _chat(self, body):
        server = self.server
        request = parse_chat_request(body, server.limits, server.model_name)
        try:
            signal = read_audio_bytes(request.audio, what="the input_audio clip")
        except AudioError as error:
            raise RequestError(400, str(error), param="messages", code="invalid_audio") from None
        seconds = signal.numel() / SAMPLE_RATE
        limit = server.limits.max_audio_seconds
        if seconds > limit:
            raise RequestError(400, f"the clip lasts {seconds:.1f} s; at most {limit:g} s are "
                                    "accepted", param="messages", code="audio_too_long")
        options = {**server.inference.decoding, **request.options}
        try:
            future = server.batcher.submit(signal, request.instruction, request.options,
                                           request.seed)
        except BusyError as error:
            raise RequestError(503, f"server busy: {error}; retry later") from None
        try:
            answer = future.result(timeout=server.request_timeout)
        # before Python 3.11 a future's timeout is not the built-in TimeoutError
        except (TimeoutError, FutureTimeoutError):
            raise RequestError(503, f"no answer within {server.request_timeout:g} s") from None
        except ValueError as error:  # decoding options the model refuses
            raise RequestError(400, str(error)) from None
        except Exception as error:  # the batch failed (logged with its traceback there)
            raise RequestError(500, f"the model failed on this request "
                                    f"({type(error).__name__}: {error}); see the server log",
                               code="model_error") from None
        tokenizer = server.inference.model.tokenizer
        completion = len(tokenizer(answer.text, add_special_tokens=False).input_ids)
        prompt = len(tokenizer(request.instruction, add_special_tokens=False).input_ids)
        return chat_response(server.model_name, answer, prompt, completion,
                             options["max_new_tokens"])
