"""Serve a local Hugging Face causal LM behind a minimal OpenAI-compatible API.

``python -m mowe.scoring.serve --model DIR [--host 127.0.0.1] [--port 8000]``

Endpoints: ``GET /v1/models``, ``POST /v1/completions`` (prompt in, greedy text out),
``POST /v1/chat/completions`` (the model's chat template is applied), ``GET /health``.
This is for judging with a model that fits one machine and for trying the judge client
without vLLM; for a 70B judge, use vLLM's server (same API). Requests are served by
threads; generation itself is serialised (one model, one forward at a time).

What a request may choose is bounded (:class:`Limits`): the body size, ``max_tokens``
and the number of chat messages; anything over a limit, ill-typed or not JSON gets a
4xx JSON error before any generation. The model is the one named on the command line
at start: a request's ``model`` field is reported back but never opened, and no
request makes the server load a YAML file, a checkpoint or any other file. It listens
on 127.0.0.1 unless told otherwise, and has no authentication: do not expose it.
"""

import argparse
import json
import logging
import os
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

logger = logging.getLogger(__name__)

CHAT_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Limits:
    """Bounds on what a client may ask of the server.

    Attributes
    ----------
    max_body_bytes : int
        Largest request body (413 above it, without reading it).
    max_tokens : int
        Largest ``max_tokens`` a request may ask for.
    max_messages : int
        Most chat messages in one request.
    socket_timeout : float
        Seconds a connection may stay silent (a client that never sends its body).
    """

    max_body_bytes: int = 1 << 20
    max_tokens: int = 1024
    max_messages: int = 64
    socket_timeout: float = 30.0


class RequestError(ValueError):
    """A request the server refuses: ``status`` (4xx) and a one-line message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def check_max_tokens(value, limits):
    """``max_tokens`` of a request (None: the server's default), within the limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or \
            not 1 <= value <= limits.max_tokens:
        raise RequestError(400, f"max_tokens must be an integer from 1 to "
                                f"{limits.max_tokens}, not {value!r}"[:200])
    return value


def check_messages(messages, limits):
    """Chat messages: a non-empty list of ``{"role", "content"}`` string pairs."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages must be a non-empty list")
    if len(messages) > limits.max_messages:
        raise RequestError(400, f"too many messages: {len(messages)} (at most "
                                f"{limits.max_messages})")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES or \
                not isinstance(message.get("content"), str):
            raise RequestError(400, f"messages[{index}] must be {{\"role\": one of "
                                    f"{', '.join(CHAT_ROLES)}, \"content\": a string}}")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def check_prompt(prompt):
    """A completion prompt: a string, or a list holding one string."""
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise RequestError(400, "prompt must be a string (or a list of one string)")
    return prompt


class LocalGenerator:
    """Greedy generation from a local model folder, one request at a time."""

    def __init__(self, model_dir, device="cpu", default_max_tokens=128):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not os.path.isdir(model_dir):
            raise FileNotFoundError(f"model folder {model_dir} does not exist")
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
        self.model.to(device).eval()
        self.device = device
        self.default_max_tokens = default_max_tokens
        self.name = os.path.basename(os.path.normpath(model_dir))
        self._lock = threading.Lock()

    def complete(self, prompt, max_tokens=None, chat=False):
        if chat:
            ids = self.tokenizer.apply_chat_template(
                prompt, add_generation_prompt=True, return_tensors="pt",
                return_dict=True)["input_ids"]
        else:
            ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"]
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit and ids.shape[1] >= limit:
            raise RequestError(400, f"prompt of {ids.shape[1]} tokens is over the model's "
                                    f"context of {limit}")
        ids = ids.to(self.device)
        with self._lock, self.torch.no_grad():
            out = self.model.generate(
                ids, attention_mask=self.torch.ones_like(ids), do_sample=False,
                max_new_tokens=int(max_tokens or self.default_max_tokens),
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def make_handler(complete, model_name, limits=Limits()):
    """A request handler class answering the OpenAI-style endpoints.

    Parameters
    ----------
    complete : callable
        ``complete(prompt_or_messages, max_tokens, chat) -> str``.
    model_name : str
        Name reported by ``/v1/models`` and in every reply (a request's ``model``
        field is never used to choose or load anything).
    limits : Limits
        Bounds on the request size and what a client may ask for.
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = limits.socket_timeout

        def log_message(self, fmt, *args):  # route to logging, not stderr spam
            logger.info("%s " + fmt, self.address_string(), *args)

        def _send(self, code, payload):
            data = json.dumps(payload).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code, message):
            self._send(code, {"error": {"message": message, "code": code}})

        def do_GET(self):
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": model_name,
                                                             "object": "model"}]})
            elif self.path.rstrip("/") == "/health":
                self._send(200, {"status": "ok"})
            else:
                self._error(404, f"no route {self.path}"[:200])

        def _read_body(self):
            """The request's JSON object, within the size limit."""
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self.close_connection = True
                raise RequestError(411, "send a Content-Length (chunked bodies are refused)")
            length = self.headers.get("Content-Length")
            if length is None:
                self.close_connection = True
                raise RequestError(411, "Content-Length required")
            try:
                length = int(length)
                if length < 0:
                    raise ValueError(length)
            except ValueError:
                self.close_connection = True
                raise RequestError(400, "Content-Length is not a byte count") from None
            if length > limits.max_body_bytes:
                self.close_connection = True  # the body is not read: drop the connection
                raise RequestError(413, f"request body of {length} bytes is over the limit "
                                        f"of {limits.max_body_bytes} bytes")
            try:
                body = json.loads(self.rfile.read(length).decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                raise RequestError(400, "body is not JSON") from None
            if not isinstance(body, dict):
                raise RequestError(400, "body must be a JSON object")
            return body

        def _answer(self, route, body):
            """(object kind, choice) of a completion request."""
            max_tokens = check_max_tokens(body.get("max_tokens"), limits)
            if route.endswith("/chat/completions"):
                if "messages" not in body:
                    raise RequestError(400, "missing field 'messages'")
                text = complete(check_messages(body["messages"], limits), max_tokens, True)
                return "chat.completion", {"index": 0, "finish_reason": "stop",
                                           "message": {"role": "assistant", "content": text}}
            if "prompt" not in body:
                raise RequestError(400, "missing field 'prompt'")
            text = complete(check_prompt(body["prompt"]), max_tokens, False)
            return "text_completion", {"index": 0, "finish_reason": "stop", "text": text}

        def do_POST(self):
            route = self.path.rstrip("/")
            try:
                body = self._read_body()
                if not route.endswith("/completions"):
                    raise RequestError(404, f"no route {self.path}"[:200])
                kind, choice = self._answer(route, body)
            except RequestError as error:
                self._error(error.status, str(error))
                return
            except Exception as error:  # noqa: BLE001 - report, keep serving
                logger.exception("generation failed")
                self._error(500, f"generation failed: {type(error).__name__}")
                return
            self._send(200, {"object": kind, "model": model_name, "choices": [choice]})

    return Handler


def serve(complete, model_name, host="127.0.0.1", port=0, limits=Limits()):
    """A :class:`ThreadingHTTPServer` answering with ``complete`` (not yet serving).

    Call ``serve_forever()`` on it (in a thread for tests) and ``shutdown()`` to stop.
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("listening on %s: anyone who can reach this address can use the "
                       "model (there is no authentication)", host)
    server = ThreadingHTTPServer((host, port), make_handler(complete, model_name, limits))
    server.daemon_threads = True
    return server


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="local model folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max_tokens", type=int, default=128,
                        help="default generation length when a request names none")
    parser.add_argument("--max_tokens_limit", type=int, default=Limits.max_tokens,
                        help="largest max_tokens a request may ask for (400 above it)")
    parser.add_argument("--max_request_bytes", type=int, default=Limits.max_body_bytes,
                        help="largest request body (413 above it)")
    parser.add_argument("--max_messages", type=int, default=Limits.max_messages,
                        help="most chat messages per request (400 above it)")
    args = parser.parse_args(argv)
    if not 1 <= args.max_tokens <= args.max_tokens_limit:
        parser.error(f"--max_tokens {args.max_tokens} must be from 1 to --max_tokens_limit "
                     f"{args.max_tokens_limit}")
    limits = Limits(max_body_bytes=args.max_request_bytes, max_tokens=args.max_tokens_limit,
                    max_messages=args.max_messages)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        generator = LocalGenerator(args.model, args.device, args.max_tokens)
    except (FileNotFoundError, OSError) as error:
        sys.exit(f"error: {error}")
    server = serve(generator.complete, generator.name, args.host, args.port, limits)
    logger.info("serving %s on http://%s:%d/v1", generator.name, args.host,
                server.server_address[1])
    print(f"READY http://{args.host}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
