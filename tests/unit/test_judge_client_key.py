"""The judge client sends its API key to the host it was given and nowhere else: a
judge URL that redirects (to another local port here) is not followed, so the key never
reaches the redirect's target. Two servers on 127.0.0.1, in threads."""

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mowe.scoring import judge

KEY = "judge-s3cret"


class Recording:
    """A local HTTP server recording each request's method, path and Authorization;
    ``redirect_to`` (a URL) makes it answer every request with ``status`` and that
    Location, else it answers as a judge would."""

    def __init__(self, status=302, redirect_to=None):
        self.seen = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                owner.seen.append((self.command, self.path,
                                   self.headers.get("Authorization")))
                if redirect_to:
                    self.send_response(status)
                    self.send_header("Location", redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = json.dumps({"choices": [{"message": {"content": "ok\nRating: 4"},
                                                "text": "ok\nRating: 4"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                       kwargs={"poll_interval": 0.05})
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


def test_the_key_reaches_the_given_host():
    with Recording() as server:
        backend = judge.OpenAIJudge(server.url + "/v1", "m", api_key=KEY, retries=0)
        assert backend("prompt") == "ok\nRating: 4"
    assert server.seen == [("POST", "/v1/chat/completions", f"Bearer {KEY}")]


def test_the_harness_would_see_a_leak():
    """Stock urllib follows a 302 and copies Authorization to the new host: what the
    judge client must not do (and what the next test would catch)."""
    with Recording() as elsewhere, Recording(302, elsewhere.url) as given:
        request = urllib.request.Request(given.url + "/v1/x", data=b"{}", method="POST",
                                         headers={"Authorization": f"Bearer {KEY}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
    assert elsewhere.seen == [("GET", "/v1/x", f"Bearer {KEY}")]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_a_redirect_is_not_followed_and_the_key_stays_home(status, endpoint):
    with Recording() as elsewhere, Recording(status, elsewhere.url) as given:
        backend = judge.OpenAIJudge(given.url + "/v1", "m", endpoint=endpoint, api_key=KEY,
                                    retries=3, backoff=0.01)
        with pytest.raises(judge.JudgeError, match=f"HTTP {status} redirect to "
                                                   f"'{elsewhere.url}/v1/"):
            backend("prompt")
    assert elsewhere.seen == []  # neither the key nor anything else went there
    assert len(given.seen) == 1  # a redirect is not retried either
    assert given.seen[0][2] == f"Bearer {KEY}"
