"""OpenAI chat-completions requests with audio input: validation and responses.

A request is accepted when its last user message holds text parts (the instruction)
and exactly one ``input_audio`` part (``{"data": BASE64, "format": "wav"}``), as in
OpenAI's audio-input format. Everything a client controls is checked and capped; a bad
request raises :class:`RequestError`, which the server turns into a 4xx JSON error in
OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``).

Example
-------
>>> limits = Limits()
>>> body = {"messages": [{"role": "user", "content": [
...     {"type": "text", "text": "Transcribe."},
...     {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]}]}
>>> request = parse_chat_request(body, limits, "mowe")
>>> request.instruction, request.audio[:4], request.options
('Transcribe.', b'RIFF', {})
"""

import base64
import binascii
import time
import uuid
from dataclasses import dataclass, field


class RequestError(Exception):
    """A request the server refuses: HTTP ``status`` and an OpenAI-style error body."""

    def __init__(self, status, message, param=None, code=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code or {400: "invalid_request", 404: "not_found", 405: "method_not_allowed",
                             411: "length_required", 413: "request_too_large",
                             503: "server_busy"}.get(status, "error")

    def body(self):
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param,
                          "code": self.code}}


@dataclass
class Limits:
    """Caps on what one request may ask for.

    Attributes
    ----------
    max_body_bytes : int
        Largest request body read (larger: 413 without reading it).
    max_audio_seconds : float
        Longest clip.
    max_tokens : int
        Largest ``max_tokens`` / ``max_completion_tokens``.
    max_messages : int
        Most messages in a conversation.
    max_text_chars : int
        Longest instruction.
    """

    max_body_bytes: int = 16 * 1024 * 1024
    max_audio_seconds: float = 30.0
    max_tokens: int = 512
    max_messages: int = 32
    max_text_chars: int = 4000


@dataclass
class ChatRequest:
    """A validated request: the audio bytes, the instruction, decoding overrides."""

    audio: bytes
    instruction: str
    options: dict = field(default_factory=dict)
    seed: int = None
    stream: bool = False
    include_usage: bool = False


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _audio_bytes(part, where):
    payload = part.get("input_audio")
    if not isinstance(payload, dict):
        raise RequestError(400, f"{where}.input_audio must be an object with 'data' (base64) "
                                "and 'format'", param=f"{where}.input_audio")
    data, audio_format = payload.get("data"), payload.get("format", "wav")
    if not isinstance(data, str) or not data:
        raise RequestError(400, f"{where}.input_audio.data must be a non-empty base64 string",
                           param=f"{where}.input_audio.data")
    if not isinstance(audio_format, str):
        raise RequestError(400, f"{where}.input_audio.format must be a string such as 'wav'",
                           param=f"{where}.input_audio.format")
    if data.startswith("data:") and "," in data:  # a data URL
        data = data.split(",", 1)[1]
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"{where}.input_audio.data is not valid base64",
                           param=f"{where}.input_audio.data", code="invalid_audio") from None


def _decoding(body, limits):
    """Decoding overrides from the request's sampling fields."""
    options, seed = {}, None
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if not _is_int(value) or not 1 <= value <= limits.max_tokens:
            raise RequestError(400, f"{key} must be an integer from 1 to {limits.max_tokens}",
                               param=key)
        options["max_new_tokens"] = value
        break
    temperature = body.get("temperature")
    if temperature is not None:
        if not _is_number(temperature) or not 0 <= temperature <= 2:
            raise RequestError(400, "temperature must be a number from 0 to 2",
                               param="temperature")
        if temperature > 0:
            options.update(do_sample=True, temperature=float(temperature))
        else:
            options["do_sample"] = False
    top_p = body.get("top_p")
    if top_p is not None:
        if not _is_number(top_p) or not 0 < top_p <= 1:
            raise RequestError(400, "top_p must be a number in (0, 1]", param="top_p")
        options["top_p"] = float(top_p)
    penalty = body.get("repetition_penalty")
    if penalty is not None:
        if not _is_number(penalty) or not 0 < penalty <= 10:
            raise RequestError(400, "repetition_penalty must be a number in (0, 10]",
                               param="repetition_penalty")
        options["repetition_penalty"] = float(penalty)
    beams = body.get("num_beams")
    if beams is not None:
        if not _is_int(beams) or not 1 <= beams <= 16:
            raise RequestError(400, "num_beams must be an integer from 1 to 16",
                               param="num_beams")
        options["num_beams"] = beams
    if body.get("seed") is not None:
        if not _is_int(body["seed"]):
            raise RequestError(400, "seed must be an integer", param="seed")
        seed = body["seed"]
    return options, seed


def parse_chat_request(body, limits, model_name):
    """Validate a ``/v1/chat/completions`` body.

    Arguments
    ---------
    body : object
        The decoded JSON body.
    limits : Limits
    model_name : str
        The served model's name (a request naming another model gets 404).

    Returns
    -------
    ChatRequest

    Raises
    ------
    RequestError
        Wrong field types, a missing or second audio clip, limits exceeded, ``n > 1``
        asked for, another model named.
    """
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError(400, "model must be a string", param="model")
    if model not in (None, "", model_name):
        raise RequestError(404, f"model {model!r} is not served here (this server serves "
                                f"{model_name!r}; see /v1/models)", param="model",
                           code="model_not_found")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(400, "stream must be true or false", param="stream")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise RequestError(400, "stream_options must be an object", param="stream_options")
    n = body.get("n", 1)
    if not _is_int(n) or n != 1:
        raise RequestError(400, "only n=1 is supported", param="n")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages must be a non-empty list", param="messages")
    if len(messages) > limits.max_messages:
        raise RequestError(400, f"at most {limits.max_messages} messages per request",
                           param="messages")
    audio, texts, user_seen = None, [], False
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise RequestError(400, f"{where} must be an object", param=where)
        role, content = message.get("role"), message.get("content")
        if role not in ("system", "developer", "user", "assistant"):
            raise RequestError(400, f"{where}.role must be system, user or assistant",
                               param=f"{where}.role")
        if isinstance(content, str):
            parts = [{"type": "text", "text": content}]
        elif isinstance(content, list):
            parts = content
        else:
            raise RequestError(400, f"{where}.content must be a string or a list of parts",
                               param=f"{where}.content")
        if role != "user":
            continue  # the model has its own system prompt and answers single turns
        user_seen, texts = True, []  # the last user message is the question
        for number, part in enumerate(parts):
            part_where = f"{where}.content[{number}]"
            if not isinstance(part, dict):
                raise RequestError(400, f"{part_where} must be an object", param=part_where)
            kind = part.get("type")
            if kind == "text":
                if not isinstance(part.get("text"), str):
                    raise RequestError(400, f"{part_where}.text must be a string",
                                       param=f"{part_where}.text")
                texts.append(part["text"])
            elif kind == "input_audio":
                if audio is not None:
                    raise RequestError(400, "one audio clip per request: send each clip in "
                                            "its own request", param=part_where,
                                       code="too_many_clips")
                audio = _audio_bytes(part, part_where)
            else:
                raise RequestError(400, f"{part_where}.type must be 'text' or 'input_audio', "
                                        f"not {kind!r}", param=f"{part_where}.type")
    if not user_seen:
        raise RequestError(400, "no user message", param="messages")
    if audio is None:
        raise RequestError(400, "no audio: the user message needs an input_audio part "
                                "({'type': 'input_audio', 'input_audio': {'data': BASE64, "
                                "'format': 'wav'}})", param="messages", code="missing_audio")
    instruction = "\n".join(text.strip() for text in texts if text.strip())
    if not instruction:
        raise RequestError(400, "no instruction: the user message needs a text part",
                           param="messages", code="missing_instruction")
    if len(instruction) > limits.max_text_chars:
        raise RequestError(400, f"the instruction is longer than {limits.max_text_chars} "
                                "characters", param="messages")
    options, seed = _decoding(body, limits)
    return ChatRequest(audio, instruction, options, seed, stream,
                       bool(stream_options.get("include_usage")))


def chat_response(model_name, answer, prompt_tokens, completion_tokens, max_new_tokens):
    """A ``chat.completion`` object for one answer (with the routing as ``mowe``)."""
    finish = "length" if completion_tokens >= max_new_tokens else "stop"
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [{"index": 0, "finish_reason": finish,
                     "message": {"role": "assistant", "content": answer.text}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
        "mowe": {"selected": answer.selected, "routers": answer.routers},
    }


def chat_chunks(model_name, answer, prompt_tokens, completion_tokens, max_new_tokens,
                include_usage=False, words_per_chunk=4):
    """The ``chat.completion.chunk`` objects of a streamed answer (OpenAI's order: the
    role, the content in pieces, the finish reason, then usage if asked for).

    The model produces its answer whole (batched decoding), so the pieces follow each
    other at once: a client sees OpenAI's stream format, not earlier first tokens."""
    finish = "length" if completion_tokens >= max_new_tokens else "stop"
    common = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
              "created": int(time.time()), "model": model_name}
    yield {**common, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                  "finish_reason": None}]}
    words = answer.text.split(" ")
    for first in range(0, len(words), words_per_chunk):
        piece = " ".join(words[first:first + words_per_chunk])
        if first:
            piece = " " + piece
        yield {**common, "choices": [{"index": 0, "delta": {"content": piece},
                                      "finish_reason": None}]}
    yield {**common, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
           "mowe": {"selected": answer.selected, "routers": answer.routers}}
    if include_usage:
        yield {**common, "choices": [], "usage": {
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}}


def models_response(model_name, created):
    """The ``/v1/models`` list."""
    return {"object": "list", "data": [{"id": model_name, "object": "model",
                                        "created": int(created), "owned_by": "mowe"}]}
