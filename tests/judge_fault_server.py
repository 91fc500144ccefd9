"""A real judge server for tests: ``mowe.scoring.serve`` on a local model, with faults.

``python tests/judge_fault_server.py --model DIR`` prints ``READY <url>`` once it
listens. Faults are keyed by markers in the prompt: ``SLOW-ONCE`` delays the first
request by ``--delay`` seconds, ``FAIL-ONCE`` makes the first request fail with HTTP
500, ``SLOW-ALWAYS`` delays every request. ``GET /stats`` returns the number of
completion requests received.
"""

import argparse
import json
import sys
import threading
import time
from http.server import ThreadingHTTPServer

from mowe.scoring.serve import LocalGenerator, make_handler


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--delay", type=float, default=4.0)
    args = parser.parse_args()
    generator = LocalGenerator(args.model, default_max_tokens=40)
    seen, lock, stats = set(), threading.Lock(), {"requests": 0}

    def complete(prompt, max_tokens, chat):
        text = json.dumps(prompt)
        with lock:
            stats["requests"] += 1
            first = text not in seen
            seen.add(text)
        if "SLOW-ALWAYS" in text or ("SLOW-ONCE" in text and first):
            time.sleep(args.delay)
        if "FAIL-ONCE" in text and first:
            raise RuntimeError("injected failure")
        return generator.complete(prompt, max_tokens, chat)

    handler = make_handler(complete, "scripted")
    base_get = handler.do_GET

    def do_get(self):
        if self.path == "/stats":
            with lock:
                self._send(200, dict(stats))
        else:
            base_get(self)

    handler.do_GET = do_get
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    print(f"READY http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
