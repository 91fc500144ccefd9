"""The inference server's FastAPI app: OpenAI's endpoints in front of a MoWE model.

Routes (``/health`` open, the rest behind the API key when one is set; see
:mod:`mowe.utils.http_server` for the limits every request meets):

* ``POST /v1/chat/completions``: a user message with a text part (the instruction) and an
  ``input_audio`` part (base64 wav/flac/mp3/...); ``"stream": true`` answers with
  server-sent events in OpenAI's chunk format. The answer's ``mowe`` field names the weak
  encoder each router chose.
* ``POST /v1/audio/transcriptions``: OpenAI's Whisper API: multipart ``file``, ``model``,
  ``prompt`` (the instruction; default: transcribe), ``response_format`` ``json`` /
  ``text`` / ``verbose_json``, ``temperature``.
* ``GET /v1/models``, ``GET /health``.

Concurrent requests are batched (:class:`mowe.inference.request_batching.DynamicBatcher`); audio is
checked before it is decoded (:func:`mowe.data.audio.decode_audio`); ``max_tokens`` times
the beam count is bounded by a token budget; a request whose client goes away is
cancelled before the model spends time on it.
"""

import asyncio
import json
import logging
import time

from mowe.data.audio import SAMPLE_RATE, AudioError, AudioTooLongError, read_audio_bytes
from mowe.inference.request_batching import BusyError
from mowe.utils.http_server import APIError, make_app, read_json
from mowe.inference.openai_protocol import (RequestError, _decoding, chat_chunks, chat_response,
                                  models_response, parse_chat_request)

logger = logging.getLogger(__name__)

TRANSCRIBE_INSTRUCTION = "Transcribe the speech in this audio."
RESPONSE_FORMATS = ("json", "text", "verbose_json")


class ServerState:
    """What the routes share: the model, its batcher, limits and counters.

    Arguments
    ---------
    inference : mowe.inference.api.AudioLLMInference
    batcher : mowe.inference.request_batching.DynamicBatcher
    limits : mowe.inference.openai_protocol.Limits
    model_name : str
    request_timeout : float
        Seconds a request waits for its answer (then 503).
    token_budget : int
        Largest ``max_tokens x num_beams`` a request may ask for.
    max_requests : int, optional
        Stop the server after this many answered requests (smoke tests).
    """

    def __init__(self, inference, batcher, limits, model_name, request_timeout=300.0,
                 token_budget=2048, max_requests=None):
        self.inference, self.batcher, self.limits = inference, batcher, limits
        self.model_name = model_name
        self.request_timeout = float(request_timeout)
        self.token_budget = int(token_budget)
        self.max_requests = max_requests
        self.created = time.time()
        self.handled = 0
        self.cancelled = 0
        self.on_limit = None  # set by the runner: stops the server

    def count(self):
        self.handled += 1
        if self.max_requests is not None and self.handled >= self.max_requests \
                and self.on_limit is not None:
            logger.info("answered %d requests (--max_requests): stopping", self.handled)
            self.on_limit()


def _api_error(error):
    return APIError(error.status, error.message, error.param, error.code)


def _check_budget(state, options):
    options = {**state.inference.decoding, **options}
    cost = int(options.get("max_new_tokens", 0)) * int(options.get("num_beams", 1) or 1)
    if cost > state.token_budget:
        raise APIError(400, f"max_tokens x num_beams is {cost}; this server allows at most "
                            f"{state.token_budget}", param="max_tokens",
                       code="token_budget_exceeded")
    return options


async def _decode(state, data, what):
    from starlette.concurrency import run_in_threadpool

    try:
        return await run_in_threadpool(read_audio_bytes, data, SAMPLE_RATE, what,
                                       state.limits.max_audio_seconds)
    except AudioTooLongError as error:
        raise APIError(400, str(error), param="messages", code="audio_too_long") from None
    except AudioError as error:
        raise APIError(400, str(error), param="messages", code="invalid_audio") from None


async def _answer(state, request, signal, instruction, options, seed):
    """Queue the clip and wait for its answer; cancel it if the client goes away."""
    try:
        future = state.batcher.submit(signal, instruction, options, seed)
    except BusyError as error:
        raise APIError(503, f"server busy: {error}; retry later", code="server_busy") from None
    waiting = asyncio.wrap_future(future)
    deadline = time.monotonic() + state.request_timeout
    while True:
        done, _ = await asyncio.wait({waiting}, timeout=0.25)
        if done:
            break
        if await request.is_disconnected():
            future.cancel()
            state.cancelled += 1
            logger.info("client went away: request cancelled")
            raise APIError(499, "client closed the request", code="client_closed")
        if time.monotonic() > deadline:
            future.cancel()
            raise APIError(503, f"no answer within {state.request_timeout:g} s",
                           code="timeout")
    try:
        return waiting.result()
    except ValueError as error:  # decoding options the model refuses
        raise APIError(400, str(error)) from None
    except Exception as error:  # the batch failed (logged with its traceback there)
        raise APIError(500, f"the model failed on this request ({type(error).__name__}: "
                            f"{error}); see the server log", code="model_error") from None


def _token_counts(state, instruction, text):
    tokenizer = state.inference.model.tokenizer
    completion = len(tokenizer(text, add_special_tokens=False).input_ids)
    prompt = len(tokenizer(instruction, add_special_tokens=False).input_ids)
    return prompt, completion


class _CountRequests:
    """Pure ASGI middleware counting finished requests (Starlette's ``@app.middleware``
    would hide a client's disconnect from the routes, which cancel on it)."""

    def __init__(self, app, state):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            await self.app(scope, receive, send)
        finally:
            self.state.count()


def create_app(state, api_key=None, body_timeout=30.0):
    """The FastAPI app of ``state`` (a :class:`ServerState`)."""
    # imported here: the library imports without the web stack (see mowe.utils.http_server)
    from fastapi import Request
    from fastapi.responses import PlainTextResponse, StreamingResponse

    app = make_app("mowe-serve", api_key=api_key,
                   max_body_bytes=state.limits.max_body_bytes, body_timeout=body_timeout)
    app.state.mowe = state

    app.add_middleware(_CountRequests, state=state)

    @app.get("/health")
    async def health():
        sizes = list(state.batcher.batch_sizes)
        return {"status": "ok", "model": state.model_name, "requests": state.handled,
                "batches": len(sizes), "max_batch": max(sizes, default=0),
                "queued": state.batcher.queue.qsize(), "cancelled": state.cancelled}

    @app.get("/v1/models")
    async def models():
        return models_response(state.model_name, state.created)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await read_json(request)
        try:
            parsed = parse_chat_request(body, state.limits, state.model_name)
        except RequestError as error:
            raise _api_error(error) from None
        options = _check_budget(state, parsed.options)
        signal = await _decode(state, parsed.audio, "the input_audio clip")
        answer = await _answer(state, request, signal, parsed.instruction, parsed.options,
                               parsed.seed)
        prompt, completion = _token_counts(state, parsed.instruction, answer.text)
        if not parsed.stream:
            return chat_response(state.model_name, answer, prompt, completion,
                                 options["max_new_tokens"])
        chunks = chat_chunks(state.model_name, answer, prompt, completion,
                             options["max_new_tokens"], parsed.include_usage)

        async def events():
            for chunk in chunks:
                yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        try:
            form = await request.form(max_files=1, max_fields=16,
                                      max_part_size=state.limits.max_body_bytes)
        except APIError:
            raise
        except Exception as error:  # python-multipart's and Starlette's parse errors
            raise APIError(400, f"send multipart/form-data with a 'file' part ({error})",
                           param="file") from None
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise APIError(400, "the 'file' field (the audio file) is missing",
                               param="file", code="missing_audio")
            data = await upload.read()
            model = form.get("model")
            if model not in (None, "", state.model_name, "whisper-1"):
                raise APIError(404, f"model {model!r} is not served here (this server serves "
                                    f"{state.model_name!r})", param="model",
                               code="model_not_found")
            response_format = form.get("response_format") or "json"
            if response_format not in RESPONSE_FORMATS:
                raise APIError(400, f"response_format must be one of {list(RESPONSE_FORMATS)}"
                                    f", not {response_format!r}", param="response_format")
            instruction = (form.get("prompt") or "").strip() or TRANSCRIBE_INSTRUCTION
            if len(instruction) > state.limits.max_text_chars:
                raise APIError(400, "the prompt is too long", param="prompt")
            fields = {}
            if form.get("temperature") not in (None, ""):
                try:
                    fields["temperature"] = float(form.get("temperature"))
                except ValueError:
                    raise APIError(400, "temperature must be a number",
                                   param="temperature") from None
            try:
                options, seed = _decoding(fields, state.limits)
            except RequestError as error:
                raise _api_error(error) from None
            _check_budget(state, options)
            what = f"the uploaded file {upload.filename or ''}".strip()
        finally:
            await form.close()
        signal = await _decode(state, data, what)
        answer = await _answer(state, request, signal, instruction, options, seed)
        if response_format == "text":
            return PlainTextResponse(answer.text)
        if response_format == "json":
            return {"text": answer.text}
        duration = signal.numel() / SAMPLE_RATE
        return {"task": "transcribe", "language": "english", "duration": round(duration, 3),
                "text": answer.text,
                "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": round(duration, 3),
                              "text": answer.text}],
                "mowe": {"selected": answer.selected, "routers": answer.routers}}

    return app

