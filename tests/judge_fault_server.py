"""A real judge server for tests: ``mowe.scoring.judge_server`` on a local model, with faults.

``python tests/judge_fault_server.py --model DIR`` prints ``READY <url>`` once it
listens. Faults are keyed by markers in the prompt: ``SLOW-ONCE`` delays the first
request by ``--delay`` seconds, ``FAIL-ONCE`` makes the first request fail with HTTP
500, ``SLOW-ALWAYS`` delays every request. ``GET /stats`` returns the number of
completion requests received.
"""

import argparse
import asyncio
import json
import sys
import threading

from mowe.scoring.judge_server import LocalGenerator, create_app
from mowe.utils.http_server import run_server


class Faults:
    """Pure ASGI middleware: counts completion requests and delays the marked ones.

    The delay is spent here, before the server's one-at-a-time generation, so slow
    requests stall only their own clients (as a slow vLLM batch would), not the others.
    """

    def __init__(self, app, delay, stats, seen, lock):
        self.app, self.delay = app, delay
        self.stats, self.seen, self.lock = stats, seen, lock

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].endswith("/completions"):
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        text = body.decode("utf-8", "replace")
        with self.lock:
            self.stats["requests"] += 1
            first = text not in self.seen
            self.seen.add(text)
        if "SLOW-ALWAYS" in text or ("SLOW-ONCE" in text and first):
            await asyncio.sleep(self.delay)
        replayed = False

        async def replay():  # the body once, then the connection's own messages
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--delay", type=float, default=4.0)
    args = parser.parse_args()
    generator = LocalGenerator(args.model, default_max_tokens=40)
    seen, lock, stats = set(), threading.Lock(), {"requests": 0}
    failed = set()

    def complete(prompt, max_tokens, chat):
        text = json.dumps(prompt)
        if "FAIL-ONCE" in text and text not in failed:
            failed.add(text)
            raise RuntimeError("injected failure")
        return generator.complete(prompt, max_tokens, chat)

    app = create_app(complete, "scripted")

    @app.get("/stats")
    async def stats_route():
        with lock:
            return dict(stats)

    app.add_middleware(Faults, delay=args.delay, stats=stats, seen=seen, lock=lock)
    run_server(app, "127.0.0.1", 0, on_started=lambda host, port: print(
        f"READY http://{host}:{port}/v1", flush=True))


if __name__ == "__main__":
    sys.exit(main())
