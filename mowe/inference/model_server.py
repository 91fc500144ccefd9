"""Serve a trained MoWE model behind an OpenAI-compatible HTTP API.

Usage::

    python -m mowe serve --model DIR [--host 127.0.0.1] [--port 8000]

FastAPI on uvicorn (:mod:`mowe.inference.server_app`). Endpoints: ``POST /v1/chat/completions``
(OpenAI's audio-input messages: a user message whose content holds a ``text`` part and an
``input_audio`` part with base64 wav/flac/mp3; ``"stream": true`` for server-sent
events), ``POST /v1/audio/transcriptions`` (OpenAI's Whisper API, multipart), ``GET
/v1/models``, ``GET /health``. Concurrent requests are batched (up to
``--max_batch_size`` requests, waiting at most ``--max_wait_ms`` for company). Requests
are validated and capped (API key, body size and depth, header and body deadlines, clip
length checked before decoding, max_tokens x beams, messages, concurrency); a bad one
gets a 4xx JSON error. The answer's ``mowe`` field holds the weak encoder each router
chose. With ``--api_key`` (or ``$MOWE_API_KEY``) every route but ``/health`` needs
``Authorization: Bearer KEY``.

Query it with the ``openai`` client::

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=KEY_OR_ANYTHING)
    audio = base64.b64encode(open("clip.wav", "rb").read()).decode()
    client.chat.completions.create(model=client.models.list().data[0].id, messages=[
        {"role": "user", "content": [
            {"type": "text", "text": "Transcribe the speech."},
            {"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}}]}])

Port 0 picks a free port; the line ``serving NAME on http://HOST:PORT`` says which.
"""

import argparse
import logging
import sys

from mowe.inference.ask import add_model_arguments, load_model
from mowe.utils.http_server import add_server_arguments

logger = logging.getLogger("mowe.inference.model_server")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mowe serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: a free one)")
    parser.add_argument("--served_model_name", help="model name for clients (default: the "
                                                    "package's name)")
    parser.add_argument("--max_batch_size", type=int, default=8,
                        help="most concurrent requests answered in one batch")
    parser.add_argument("--max_wait_ms", type=float, default=10.0,
                        help="how long a request waits for others to batch with")
    parser.add_argument("--max_queue", type=int, default=256,
                        help="most waiting requests (more get 503)")
    parser.add_argument("--max_body_mb", type=float, default=16.0,
                        help="largest request body in MiB (more get 413)")
    parser.add_argument("--max_audio_seconds", type=float, default=None,
                        help="longest clip (default: what the base encoder takes, 30 s "
                             "for Whisper)")
    parser.add_argument("--max_tokens", type=int, default=512,
                        help="largest max_tokens a request may ask for")
    parser.add_argument("--max_messages", type=int, default=32,
                        help="most messages per request")
    parser.add_argument("--request_timeout", type=float, default=300.0,
                        help="seconds a request waits for its answer (then 503)")
    parser.add_argument("--token_budget", type=int, default=2048,
                        help="largest max_tokens x num_beams a request may ask for")
    add_server_arguments(parser)
    parser.add_argument("--max_requests", type=int, default=None,
                        help="stop after this many requests (smoke tests)")
    parser.add_argument("--stop_after", type=float, default=None,
                        help="stop after this many seconds (smoke tests)")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)

    from mowe.inference.server_app import ServerState, create_app
    from mowe.inference.request_batching import DynamicBatcher
    from mowe.utils.http_server import resolve_api_key, run_server, warn_if_exposed
    from mowe.inference.openai_protocol import Limits

    inference = load_model(args)
    encoder_limit = inference.max_audio_seconds or 30.0
    limits = Limits(max_body_bytes=int(args.max_body_mb * 1024 * 1024),
                    max_audio_seconds=min(args.max_audio_seconds or encoder_limit,
                                          encoder_limit),
                    max_tokens=args.max_tokens, max_messages=args.max_messages)
    batcher = DynamicBatcher(inference, args.max_batch_size, args.max_wait_ms,
                             args.max_queue).start()
    name = args.served_model_name or inference.name
    api_key = resolve_api_key(args.api_key)
    warn_if_exposed(args.host, api_key, "mowe.inference.model_server")
    state = ServerState(inference, batcher, limits, name, args.request_timeout,
                        args.token_budget, args.max_requests)
    app = create_app(state, api_key=api_key, body_timeout=args.body_timeout)

    def started(host, port):
        print(f"serving {name} on http://{host}:{port} (OpenAI-compatible: "
              f"http://{host}:{port}/v1; batches of up to {args.max_batch_size}, "
              f"clips up to {limits.max_audio_seconds:g} s"
              f"{', API key required' if api_key else ''})", flush=True)

    try:
        server = run_server(app, args.host, args.port, args.limit_concurrency,
                            args.timeout_keep_alive, args.header_timeout, on_started=started,
                            stop_after=args.stop_after,
                            state_hook=lambda server: setattr(
                                state, "on_limit", lambda: setattr(server, "should_exit",
                                                                   True)))
    except OSError as error:
        sys.exit(f"error: cannot listen on {args.host}:{args.port}: {error}")
    finally:
        batcher.stop()
    if not server.started:
        sys.exit(f"error: cannot listen on {args.host}:{args.port}")
    logger.info("stopped after %d requests; batch sizes: %s", state.handled,
                batcher.batch_sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
