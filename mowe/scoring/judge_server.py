"""Serve a local Hugging Face causal LM behind a minimal OpenAI-compatible API.

``python -m mowe judge-serve --model DIR [--host 127.0.0.1] [--port 8000]``

Endpoints: ``GET /v1/models``, ``POST /v1/completions`` (prompt in, greedy text out),
``POST /v1/chat/completions`` (the model's chat template is applied), ``GET /health``.
This is for judging with a model that fits one machine and for trying the judge client
without vLLM; for a 70B judge, use vLLM's server (same API). FastAPI on uvicorn, with the
limits of :mod:`mowe.utils.http_server` (API key, body size, depth and deadline, header
deadline, concurrency); generation itself is serialised (one model, one forward at a
time) and at most ``--max_queue`` requests wait for it (more get 503 at once).

What a request may choose is bounded (:class:`Limits`): the body size, ``max_tokens``
and the number of chat messages; anything over a limit, ill-typed or not JSON gets a
4xx JSON error before any generation. The model is the one named on the command line
at start: a request's ``model`` field is reported back but never opened, and no
request makes the server load a YAML file, a checkpoint or any other file. It listens
on 127.0.0.1 unless told otherwise. With ``--api_key`` (or ``$MOWE_API_KEY``) every
route but ``/health`` needs ``Authorization: Bearer KEY`` (the judge client sends
``$OPENAI_API_KEY``); without one, do not expose it.

Once it listens it prints ``READY http://HOST:PORT/v1`` (port 0 picks a free port).

Example
-------
>>> from fastapi.testclient import TestClient
>>> app = create_app(lambda prompt, max_tokens, chat: "hi", "stub", api_key="k")
>>> client = TestClient(app)
>>> client.post("/v1/completions", json={"prompt": "p"}).status_code
401
>>> client.post("/v1/completions", json={"prompt": "p"},
...             headers={"Authorization": "Bearer k"}).json()["choices"][0]["text"]
'hi'
"""

import argparse
import asyncio
import logging
import os
import sys
import threading
from dataclasses import dataclass


from mowe.utils.http_server import (APIError, add_server_arguments, make_app, read_json,
                              resolve_api_key, run_server, warn_if_exposed)

logger = logging.getLogger(__name__)

CHAT_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Limits:
    """Bounds on what a client may ask of the server.

    Attributes
    ----------
    max_body_bytes : int
        Largest request body (413 above it: at once when Content-Length says so, else
        as soon as the bytes received pass it).
    max_tokens : int
        Largest ``max_tokens`` a request may ask for.
    max_messages : int
        Most chat messages in one request.
    socket_timeout : float
        Seconds a request's body may take to arrive (408 after; the default of
        ``body_timeout`` in :func:`create_app`).
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


class Generation:
    """One generation at a time, in a worker thread, with a bounded line of waiters.

    Arguments
    ---------
    complete : callable
        ``complete(prompt_or_messages, max_tokens, chat) -> str`` (blocking).
    max_queue : int
        Most requests waiting for the model while one generates; one more gets 503.

    Attributes
    ----------
    waiting : int
        Requests waiting now.
    generated, cancelled : int
        Calls of ``complete`` so far; requests dropped because their client left
        before their turn.
    """

    POLL_S = 0.25  # how often a waiting request looks for its client's disconnect

    def __init__(self, complete, max_queue=32):
        self.complete = complete
        self.max_queue = int(max_queue)
        self.waiting = self.generated = self.cancelled = 0
        self._loop = self._lock = None

    def _loop_lock(self):
        # an asyncio.Lock belongs to one event loop: uvicorn runs one, but tests may
        # drive the same app from several (each TestClient has its own)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._lock = loop, asyncio.Lock()
        return self._lock

    async def _client_left(self, request):
        if await request.is_disconnected():
            self.cancelled += 1
            logger.info("client went away before its turn: request dropped")
            raise APIError(499, "client closed the request", code="client_closed")

    async def run(self, request, prompt, max_tokens, chat):
        """``complete(prompt, max_tokens, chat)`` once the model is free, unless the
        client of ``request`` has gone by then.

        Raises
        ------
        APIError
            503 (``server_busy``) when ``max_queue`` requests wait already; 499 when
            the client left while waiting; the status of a :class:`RequestError`; 500
            when generation failed.
        """
        lock = self._loop_lock()
        if lock.locked() and self.waiting >= self.max_queue:
            raise APIError(503, f"server busy: {self.waiting} requests are waiting for the "
                                f"model (at most {self.max_queue}); retry later",
                           code="server_busy")
        self.waiting += 1
        try:
            while True:
                await self._client_left(request)
                try:
                    await asyncio.wait_for(lock.acquire(), timeout=self.POLL_S)
                    break
                except asyncio.TimeoutError:
                    continue
        finally:
            self.waiting -= 1
        try:
            await self._client_left(request)  # it may have left as the model came free
            self.generated += 1
            # off the event loop: other requests are still read, checked and queued
            from starlette.concurrency import run_in_threadpool

            return await run_in_threadpool(self.complete, prompt, max_tokens, chat)
        except RequestError as error:
            raise APIError(error.status, str(error)) from None
        except APIError:
            raise
        except Exception as error:  # noqa: BLE001 - report, keep serving
            logger.exception("generation failed")
            raise APIError(500, f"generation failed: {type(error).__name__}",
                           code="generation_failed") from None
        finally:
            lock.release()


def create_app(complete, model_name, limits=Limits(), api_key=None, body_timeout=None,
               max_queue=32):
    """The FastAPI app answering the OpenAI-style endpoints.

    Parameters
    ----------
    complete : callable
        ``complete(prompt_or_messages, max_tokens, chat) -> str``; called in a worker
        thread, one call at a time.
    model_name : str
        Name reported by ``/v1/models`` and in every reply (a request's ``model``
        field is never used to choose or load anything).
    limits : Limits
        Bounds on the request size and what a client may ask for.
    api_key : str, optional
        Required as ``Authorization: Bearer KEY`` on every route but ``/health``.
    body_timeout : float, optional
        Seconds a request's body may take (408 after); default ``limits.socket_timeout``.
    max_queue : int
        Most requests waiting for the model (more get 503).

    Returns
    -------
    FastAPI
        Its :class:`Generation` is ``app.state.generation``; serve it with
        :func:`mowe.utils.http_server.run_server`.
    """
    # imported here: the library imports without the web stack (see mowe.utils.http_server)
    from fastapi import Request

    app = make_app("mowe-judge", api_key=api_key, max_body_bytes=limits.max_body_bytes,
                   body_timeout=limits.socket_timeout if body_timeout is None
                   else body_timeout)
    generation = Generation(complete, max_queue)
    app.state.generation = generation

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    @app.get("/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model"}]}

    def checked(body, chat):
        """``(prompt or messages, max_tokens)``, or :class:`APIError` 400 before any
        generation."""
        try:
            max_tokens = check_max_tokens(body.get("max_tokens"), limits)
            if chat:
                if "messages" not in body:
                    raise RequestError(400, "missing field 'messages'")
                return check_messages(body["messages"], limits), max_tokens
            if "prompt" not in body:
                raise RequestError(400, "missing field 'prompt'")
            return check_prompt(body["prompt"]), max_tokens
        except RequestError as error:
            raise APIError(error.status, str(error)) from None

    @app.post("/v1/chat/completions")
    @app.post("/chat/completions")
    async def chat_completions(request: Request):
        messages, max_tokens = checked(await read_json(request), chat=True)
        text = await generation.run(request, messages, max_tokens, True)
        return {"object": "chat.completion", "model": model_name, "choices": [
            {"index": 0, "finish_reason": "stop",
             "message": {"role": "assistant", "content": text}}]}

    @app.post("/v1/completions")
    @app.post("/completions")
    async def completions(request: Request):
        prompt, max_tokens = checked(await read_json(request), chat=False)
        text = await generation.run(request, prompt, max_tokens, False)
        return {"object": "text_completion", "model": model_name, "choices": [
            {"index": 0, "finish_reason": "stop", "text": text}]}

    return app


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mowe judge-serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="local model folder")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: a free one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max_tokens", type=int, default=128,
                        help="default generation length when a request names none")
    parser.add_argument("--max_tokens_limit", type=int, default=Limits.max_tokens,
                        help="largest max_tokens a request may ask for (400 above it)")
    parser.add_argument("--max_request_bytes", type=int, default=Limits.max_body_bytes,
                        help="largest request body (413 above it)")
    parser.add_argument("--max_messages", type=int, default=Limits.max_messages,
                        help="most chat messages per request (400 above it)")
    parser.add_argument("--max_queue", type=int, default=32,
                        help="most requests waiting for the model (more get 503 at once)")
    add_server_arguments(parser, body_timeout=Limits.socket_timeout)
    args = parser.parse_args(argv)
    if not 1 <= args.max_tokens <= args.max_tokens_limit:
        parser.error(f"--max_tokens {args.max_tokens} must be from 1 to --max_tokens_limit "
                     f"{args.max_tokens_limit}")
    if args.max_queue < 0:
        parser.error(f"--max_queue must be 0 or more, not {args.max_queue}")
    limits = Limits(max_body_bytes=args.max_request_bytes, max_tokens=args.max_tokens_limit,
                    max_messages=args.max_messages, socket_timeout=args.body_timeout)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    api_key = resolve_api_key(args.api_key)
    warn_if_exposed(args.host, api_key, "mowe.scoring.judge_server")
    try:
        generator = LocalGenerator(args.model, args.device, args.max_tokens)
    except (FileNotFoundError, OSError) as error:
        sys.exit(f"error: {error}")
    app = create_app(generator.complete, generator.name, limits, api_key=api_key,
                     max_queue=args.max_queue)

    def started(host, port):
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"
        logger.info("serving %s on %s%s", generator.name, url,
                    " (API key required)" if api_key else "")
        print(f"READY {url}", flush=True)  # scripts and tests wait for this line

    try:
        server = run_server(app, args.host, args.port, args.limit_concurrency,
                            args.timeout_keep_alive, args.header_timeout, on_started=started)
    except OSError as error:
        sys.exit(f"error: cannot listen on {args.host}:{args.port}: {error}")
    if not server.started:
        sys.exit(f"error: cannot listen on {args.host}:{args.port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
