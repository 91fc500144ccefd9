"""What both HTTP servers share: FastAPI + uvicorn with the limits a public server needs.

* **API keys**: ``Authorization: Bearer <key>`` (what the ``openai`` client sends) on every
  route but ``/health`` when a key is set (``--api_key`` or ``MOWE_API_KEY``); 401 without
  it. Binding to a non-loopback address without a key logs a warning.
* **Concurrency**: uvicorn's ``limit_concurrency`` (more connections or tasks get 503),
  a listen backlog of 2048, and its keep-alive timeout for idle connections.
* **Slow clients**: a deadline on each request's headers (:class:`BoundedH11Protocol`)
  and one on its whole body (:class:`RequestLimits`: 408), so a client sending a byte
  every 50 s holds its connection for seconds, not forever. uvicorn has neither (its
  keep-alive timeout covers idle connections only), hence these few lines by hand.
* **Bodies**: at most ``max_body_bytes`` (413, counted as they arrive, whatever
  Content-Length says); JSON no deeper than :data:`MAX_JSON_DEPTH` (400).
* **Errors**: OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``.

Example
-------
>>> app = make_app("demo", api_key="k")
>>> from fastapi.testclient import TestClient
>>> client = TestClient(app)
>>> client.get("/v1/anything").status_code, client.get("/health").status_code
(401, 404)
"""

import asyncio
import ipaddress
import json
import logging
import os
import secrets
import time

logger = logging.getLogger(__name__)

MAX_JSON_DEPTH = 64
API_KEY_ENV = "MOWE_API_KEY"
OPEN_PATHS = ("/health",)


class APIError(Exception):
    """A request the server refuses: an HTTP status and OpenAI's error fields."""

    CODES = {400: "invalid_request", 401: "invalid_api_key", 404: "not_found",
             405: "method_not_allowed", 408: "request_timeout", 413: "request_too_large",
             499: "client_closed", 500: "server_error", 503: "server_busy"}

    def __init__(self, status, message, param=None, code=None, kind=None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.code = code or self.CODES.get(status, "error")
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")

    def body(self):
        return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.code}}


def error_response(status, message, param=None, code=None, headers=None):
    # FastAPI and uvicorn are imported where used: the rest of the library imports
    # without them (a training cluster needs no web server)
    from fastapi.responses import JSONResponse

    return JSONResponse(APIError(status, message, param, code).body(), status_code=status,
                        headers=headers)


def json_depth(value, limit=MAX_JSON_DEPTH):
    """Nesting depth of a parsed JSON value, stopping once past ``limit`` (iterative: a
    deep value cannot exhaust the stack here)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(raw):
    """The JSON object of a request body, or :class:`APIError` 400 (invalid, not an
    object, or nested deeper than :data:`MAX_JSON_DEPTH`)."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise APIError(400, f"the request body is not valid JSON ({error})") from None
    except RecursionError:
        raise APIError(400, f"the request body nests JSON deeper than {MAX_JSON_DEPTH} "
                            "levels") from None
    if json_depth(body) > MAX_JSON_DEPTH:
        raise APIError(400, f"the request body nests JSON deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    return body


def resolve_api_key(given):
    """The key to require: ``given`` (``--api_key``), else ``$MOWE_API_KEY``, else None."""
    return given or os.environ.get(API_KEY_ENV) or None


def is_loopback(host):
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_exposed(host, api_key, what):
    """Log a warning when ``host`` is reachable from elsewhere and no key is required."""
    if not api_key and not is_loopback(host):
        logger.warning("%s listens on %s without an API key: anyone who can reach this "
                       "address can use it. Set --api_key or %s.", what, host, API_KEY_ENV)
        return True
    return False


class RequestLimits:
    """Pure ASGI middleware: the API key, the body size and the whole-body deadline.

    Arguments
    ---------
    app : ASGI app
    api_key : str or None
    max_body_bytes : int
    body_timeout : float
        Seconds from the request's start to the end of its body (408 after).
    """

    def __init__(self, app, api_key=None, max_body_bytes=16 << 20, body_timeout=30.0):
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = int(max_body_bytes)
        self.body_timeout = float(body_timeout)

    DRAIN_LIMIT = 64 << 20

    async def _drain(self, receive, deadline, declared=None):
        """Read and discard the rest of a refused body (up to :attr:`DRAIN_LIMIT` bytes,
        until the body deadline) before answering: closing a socket that still holds
        unread data resets the connection, and the client would see a broken pipe instead
        of the 413 (nginx's lingering close does the same)."""
        if declared is not None and declared > self.DRAIN_LIMIT:
            return
        drained = 0
        while drained <= self.DRAIN_LIMIT:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                message = await asyncio.wait_for(receive(), timeout=left)
            except asyncio.TimeoutError:
                return
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.api_key and scope["path"].rstrip("/") not in OPEN_PATHS:
            given = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(
                    token.strip().encode(), self.api_key.encode()):
                response = error_response(401, "a valid API key is required: send "
                                          "'Authorization: Bearer <key>'",
                                          code="invalid_api_key",
                                          headers={"WWW-Authenticate": "Bearer"})
                return await response(scope, receive, send)
        declared = headers.get(b"content-length")
        deadline = time.monotonic() + self.body_timeout
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._drain(receive, deadline, int(declared))
            response = error_response(413, f"the request body is larger than "
                                      f"{self.max_body_bytes} bytes", code="request_too_large",
                                      headers={"Connection": "close"})
            return await response(scope, receive, send)
        received, body_done = 0, False
        refused = {}

        async def bounded_receive():
            nonlocal received, body_done
            if body_done:  # after the body: only http.disconnect is left to receive
                return await receive()
            left = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(left, 0.001))
            except asyncio.TimeoutError:
                refused["status"] = 408
                raise APIError(408, f"the request body did not arrive within "
                                    f"{self.body_timeout:g} s", code="request_timeout")
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    refused["status"] = 413
                    if message.get("more_body", False):
                        await self._drain(receive, deadline)
                    raise APIError(413, f"the request body is larger than "
                                        f"{self.max_body_bytes} bytes", code="request_too_large")
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        try:
            await self.app(scope, bounded_receive, send)
        except APIError as error:
            if "status" not in refused:
                raise
            response = error_response(error.status, error.message, error.param, error.code,
                                      headers={"Connection": "close"})
            try:
                await response(scope, receive, send)
            except RuntimeError:  # the app had started its answer already
                pass


def make_app(title, api_key=None, max_body_bytes=16 << 20, body_timeout=30.0):
    """A FastAPI app with the shared limits and OpenAI-shaped errors.

    Returns
    -------
    FastAPI
        Add routes to it; run it with :func:`run_server`.
    """
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(APIError)
    async def _api_error(request, error):
        return error_response(error.status, error.message, error.param, error.code)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, error):
        if error.status_code == 404:
            message = f"no route {request.url.path}"
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(error.detail)
        return error_response(error.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, error):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return error_response(400, f"{where or 'request'}: {first.get('msg', 'invalid')}",
                              param=where or None)

    app.add_middleware(RequestLimits, api_key=api_key, max_body_bytes=max_body_bytes,
                       body_timeout=body_timeout)
    return app


async def read_json(request):
    """The request's JSON object (see :func:`parse_json`)."""
    return parse_json(await request.body())


def bounded_protocol(header_timeout):
    """uvicorn's h11 protocol with a deadline on each request's headers (see
    :class:`BoundedH11Protocol`), as a class uvicorn's ``http=`` option takes."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class BoundedH11Protocol(H11Protocol):
        """Closes a connection whose request line and headers have not all arrived
        ``header_timeout`` seconds after it opened (or after its previous answer)."""

        def connection_made(self, transport):
            super().connection_made(transport)
            self._header_timer = None
            self._arm()

        def _arm(self):
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout, self._too_slow)

        def _disarm(self):
            if getattr(self, "_header_timer", None) is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self):
            import h11

            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                logger.info("closed a connection whose request headers took over %g s",
                            header_timeout)
                self.transport.close()

        def handle_events(self):
            import h11

            super().handle_events()
            if self.conn.their_state is not h11.IDLE:
                self._disarm()  # the request's headers are in

        def on_response_complete(self):
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

        def send_400_response(self, msg):
            """uvicorn's answer to a request h11 cannot parse (a bad Content-Length, a
            malformed request line), as a JSON error like every other refusal."""
            import h11

            self._disarm()
            data = json.dumps(APIError(400, f"{msg} (malformed request line, headers or "
                                            "Content-Length)").body()).encode()
            event = h11.Response(status_code=400, reason=b"Bad Request", headers=[
                (b"content-type", b"application/json"), (b"connection", b"close"),
                (b"content-length", str(len(data)).encode())])
            try:
                self.transport.write(self.conn.send(event))
                self.transport.write(self.conn.send(h11.Data(data=data)))
                self.transport.write(self.conn.send(h11.EndOfMessage()))
            except h11.LocalProtocolError:
                pass
            self.transport.close()

    return BoundedH11Protocol


def add_server_arguments(parser, body_timeout=30.0):
    """The command-line options of :func:`run_server` and :class:`RequestLimits` that
    both servers take."""
    parser.add_argument("--api_key", default=None,
                        help="require 'Authorization: Bearer KEY' (default: $MOWE_API_KEY; "
                             "none: no key; /health stays open)")
    parser.add_argument("--limit_concurrency", type=int, default=512,
                        help="most connections and requests at once (more get 503)")
    parser.add_argument("--timeout_keep_alive", type=float, default=5.0,
                        help="seconds an idle keep-alive connection stays open")
    parser.add_argument("--header_timeout", type=float, default=10.0,
                        help="seconds a request's headers may take to arrive")
    parser.add_argument("--body_timeout", type=float, default=body_timeout,
                        help="seconds a request's body may take to arrive (then 408)")


def run_server(app, host, port, limit_concurrency=512, timeout_keep_alive=5,
               header_timeout=10.0, on_started=None, stop_after=None, log_level="warning",
               state_hook=None):
    """Serve ``app`` with uvicorn until interrupted (or ``stop_after`` seconds).

    Arguments
    ---------
    limit_concurrency : int
        Most connections and tasks at once; more get 503 at once. uvicorn counts open
        connections, and refuses *every* request while more are open than this (a burst
        of 100 connections against a limit of 64 got 100 503s), so it is set well above
        the expected concurrency; the model's own queue (``--max_queue``) answers 503
        when the work, not the connections, is too much.
    timeout_keep_alive : float
        Seconds an idle keep-alive connection stays open.
    header_timeout : float
        Seconds a request's headers may take to arrive.
    on_started : callable, optional
        Called with ``(host, port)`` once listening (port 0 picks a free one).
    stop_after : float, optional
        Stop after this many seconds.
    state_hook : callable, optional
        Called with the ``uvicorn.Server`` before it starts (e.g. to stop it later by
        setting its ``should_exit``).

    Returns
    -------
    uvicorn.Server
        After it stopped (``started`` is False when it could not listen).
    """
    import threading

    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            access_log=False, limit_concurrency=limit_concurrency,
                            timeout_keep_alive=timeout_keep_alive, backlog=2048,
                            http=bounded_protocol(header_timeout), lifespan="on",
                            server_header=False)
    server = uvicorn.Server(config)
    if state_hook is not None:
        state_hook(server)

    if on_started is not None or stop_after:
        def watch():
            while not server.started and not server.should_exit:
                time.sleep(0.02)
            if server.started and on_started is not None:
                sockets = [s for srv in server.servers for s in srv.sockets]
                bound = sockets[0].getsockname()[:2] if sockets else (host, port)
                on_started(*bound)
            if stop_after:
                time.sleep(stop_after)
                server.should_exit = True

        threading.Thread(target=watch, daemon=True).start()
    server.run()
    return server
