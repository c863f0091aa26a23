"""Base for fake LLM providers served over real HTTP on localhost.

A fake answers through real sockets, exactly as a provider would, so the gateway's HTTP client,
timeouts and stream parsing are exercised for real. Subclasses only declare their routes and wire
formats; this module owns the behaviour knobs (latency, forced errors, stream pacing, dropped
connections, in-stream errors), request recording, and the ``/_fake/`` control endpoints that drive
a fake running as a separate process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import select
import socket
import sys
import threading
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

CONTROL_PREFIX = "/_fake/"

StreamEnding = Literal["finish", "cut", "error"]
"""A stream either finishes normally, has its connection cut, or ends with an in-stream error."""


@dataclass(frozen=True)
class Knobs:
    """How the fake behaves; the defaults are a fast, healthy provider."""

    latency: float = field(default=0.0, metadata={"help": "seconds to wait before answering"})
    status: int | None = field(
        default=None, metadata={"help": "force this HTTP error status, with the provider's error body"}
    )
    retry_after: float | None = field(
        default=None, metadata={"help": "seconds sent as Retry-After with a forced status"}
    )
    reply: str | None = field(default=None, metadata={"help": "assistant text instead of the default echo"})
    api_key: str | None = field(default=None, metadata={"help": "require this API key, else answer 401"})
    chunk_count: int | None = field(
        default=None, metadata={"help": "stream the reply in this many content chunks (default: per word)"}
    )
    chunk_interval: float = field(default=0.0, metadata={"help": "seconds between stream content chunks"})
    time_to_first_token: float = field(
        default=0.0, metadata={"help": "seconds between the stream's headers and its first chunk"}
    )
    cut_after: int | None = field(
        default=None, metadata={"help": "drop the connection after this many stream content chunks"}
    )
    error_after: int | None = field(
        default=None,
        metadata={"help": "end the stream with an in-stream error after this many content chunks"},
    )
    hang: bool = field(
        default=False, metadata={"help": "never answer; hold the request until the client gives up"}
    )

    def __post_init__(self) -> None:
        # Knobs also arrive as JSON over /_fake/config and from the CLI, so reject nonsense here
        # rather than letting a request thread crash on it later.
        for knob in fields(self):
            value = getattr(self, knob.name)
            if value is None and knob.default is None:
                continue
            expected = _KNOB_TYPES[knob.name]
            if not _is_instance(value, expected):
                raise TypeError(f"knob {knob.name!r} must be {expected.__name__}, got {value!r}")
            if expected in (int, float) and value < 0:
                raise ValueError(f"knob {knob.name!r} must not be negative, got {value!r}")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError(f"knob 'status' must be an HTTP error status (400-599), got {self.status}")
        if self.chunk_count == 0:
            raise ValueError("knob 'chunk_count' must be at least 1")

    def stream_ending(self, chunks: int) -> tuple[int, StreamEnding]:
        """How many of a stream's ``chunks`` content chunks to send, and how the stream then ends.

        ``cut_after`` wins over an ``error_after`` at the same or a later chunk. Both apply even past
        the last chunk: the stream then never finishes normally.
        """
        if self.cut_after is not None and (self.error_after is None or self.cut_after <= self.error_after):
            return min(chunks, self.cut_after), "cut"
        if self.error_after is not None:
            return min(chunks, self.error_after), "error"
        return chunks, "finish"


def _scalar_type(hint: Any) -> type:
    """The type behind an annotation such as ``float | None``."""
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return args[0] if args else hint


_KNOB_TYPES: dict[str, type] = {
    name: _scalar_type(hint) for name, hint in typing.get_type_hints(Knobs).items()
}


def _is_instance(value: Any, expected: type) -> bool:
    # bool is an int subclass, yet `status=True` is always a mistake; ints are fine where floats are.
    if isinstance(value, bool):
        return expected is bool
    if expected is float:
        return isinstance(value, int | float)
    return isinstance(value, expected)


def _updated_knobs(knobs: Knobs, changes: Mapping[str, Any]) -> Knobs:
    unknown = sorted(set(changes) - set(_KNOB_TYPES))
    if unknown:
        raise TypeError(f"unknown knob(s): {', '.join(unknown)}; known: {', '.join(_KNOB_TYPES)}")
    return replace(knobs, **changes)


class InvalidRequest(Exception):
    """Raised by a route handler to answer 400 with the provider's error body."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


RouteHandler = Callable[[Any, "FakeRequestHandler", "re.Match[str]"], None]


@dataclass(frozen=True)
class Route:
    """Send ``method`` requests whose path fully matches ``pattern`` to ``handler(fake, exchange, match)``."""

    method: str
    pattern: str
    handler: RouteHandler


class FakeRequestHandler(BaseHTTPRequestHandler):
    """One HTTP exchange; route handlers read the request and write the answer through it."""

    # Keep-alive like a real provider (SDK connection pools reuse sockets) and chunked streams.
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    route_path: str
    """The request path without its query string (``self.path`` is the raw request target)."""
    raw_body: bytes
    body: Any
    """The body parsed as JSON, or None when it is empty or not JSON."""
    knobs: Knobs
    """The knobs in force for this request, fixed when it arrived."""
    response_headers: dict[str, str]
    """Extra headers for every answer to this request (``send_json`` and ``start_stream``)."""
    record: dict[str, Any]
    """This request as ``/_fake/requests`` lists it."""

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle plus the client's
        # delayed ACK add ~40 ms to every answer and smear stream timing.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _dispatch(self) -> None:
        self.route_path = urlsplit(self.path).path
        self.response_headers = {}
        length = int(self.headers.get("Content-Length") or 0)
        # Always drain the body, even when rejecting, or the next request on this keep-alive
        # connection would be parsed from its leftovers.
        self.raw_body = self.rfile.read(length)
        try:
            self.body = json.loads(self.raw_body) if self.raw_body else None
        except ValueError:
            self.body = None
        self.server.fake.handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: test and benchmark output should not drown in access logs."""

    def send_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in {**self.response_headers, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def start_stream(self, content_type: str = "text/event-stream") -> None:
        """Send 200 headers for a body that follows in chunks (chunked transfer encoding)."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in self.response_headers.items():
            self.send_header(name, value)
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        """Send ``data`` (non-empty: an empty chunk would end the body) to the client right away; a
        client that hung up mid-stream is noted in the request's record (``client_closed``)."""
        try:
            self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
        except ConnectionError:
            self.record["client_closed"] = True
            raise

    def send_event(self, data: str, event: str | None = None) -> None:
        """Send one server-sent event."""
        prefix = f"event: {event}\n" if event else ""
        self.write_chunk(f"{prefix}data: {data}\n\n".encode())

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def drop_connection(self) -> None:
        """Close the socket without finishing the answer, like a crashed provider or broken proxy."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client may have hung up already
            self.connection.shutdown(socket.SHUT_RDWR)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # stop() must not wait for requests that hang or stream slowly on purpose.
    block_on_close = False

    def __init__(self, address: tuple[str, int], fake: FakeProviderServer) -> None:
        self.fake = fake
        super().__init__(address, FakeRequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-answer is routine here (timeouts, cancelled or cut streams);
        # anything else is a bug in the fake and deserves its traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeProviderServer:
    """A fake provider on a real localhost port, with knobs to make it slow, failing or flaky.

    Subclasses set ``provider_name``, ``api_base_path`` and ``routes``, and override
    ``error_body`` (and ``presented_api_key`` if the provider does not use bearer auth).
    """

    provider_name: ClassVar[str] = "generic"
    api_base_path: ClassVar[str] = ""
    routes: ClassVar[tuple[Route, ...]] = ()

    def __init__(self, port: int = 0, host: str = "127.0.0.1", **knobs: Any) -> None:
        self.host = host
        self._knobs = _updated_knobs(Knobs(), knobs)
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # Bound here rather than in start() so .port and .url are known before serving.
        self._httpd = _HTTPServer((host, port), self)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What the provider's official SDK takes as its base URL."""
        return self.url + self.api_base_path

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("fake provider already started")
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            # A short poll keeps stop() fast, which matters with a fresh server per test.
            kwargs={"poll_interval": 0.05},
            name=f"fake-{self.provider_name}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def knobs(self) -> Knobs:
        return self._knobs

    def configure(self, **knobs: Any) -> Knobs:
        """Change some knobs, keeping the others; unknown names raise TypeError."""
        with self._lock:
            self._knobs = _updated_knobs(self._knobs, knobs)
            return self._knobs

    def reset(self) -> Knobs:
        with self._lock:
            self._knobs = Knobs()
            return self._knobs

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Provider requests received so far: method, path (raw target), lowercased headers, JSON body."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def requested_models(self) -> list[str]:
        """The models named by the requests received so far, each once, in order of first use."""
        models = [
            entry["body"]["model"]
            for entry in self.requests
            if isinstance(entry["body"], dict) and isinstance(entry["body"].get("model"), str)
        ]
        return list(dict.fromkeys(models))

    def sleep(self, seconds: float) -> bool:
        """Wait like time.sleep but wake when the server stops; returns whether it is still running."""
        return not self._stopping.wait(seconds)

    def presented_api_key(self, exchange: FakeRequestHandler) -> str | None:
        """The API key the client sent; bearer auth here, override for other schemes."""
        scheme, _, token = (exchange.headers.get("Authorization") or "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None

    def error_body(self, status: int, message: str | None = None, param: str | None = None) -> Any:
        """The provider's JSON error body for ``status``; ``message`` None means the provider's stock text."""
        return {"error": {"status": status, "message": message or _reason(status), "param": param}}

    def handle(self, exchange: FakeRequestHandler) -> None:
        if exchange.route_path.startswith(CONTROL_PREFIX):
            self._control(exchange)
            return
        exchange.knobs = knobs = self._knobs
        self._record(exchange)
        if knobs.hang:
            self._hold(exchange)
            exchange.drop_connection()
            return
        if not self.sleep(knobs.latency):
            exchange.drop_connection()
            return
        if knobs.api_key is not None and self.presented_api_key(exchange) != knobs.api_key:
            exchange.send_json(401, self.error_body(401))
            return
        if knobs.status is not None:
            headers = {"Retry-After": f"{knobs.retry_after:g}"} if knobs.retry_after is not None else {}
            exchange.send_json(knobs.status, self.error_body(knobs.status), headers)
            return
        for route in self.routes:
            match = re.fullmatch(route.pattern, exchange.route_path)
            if match and route.method == exchange.command:
                try:
                    route.handler(self, exchange, match)
                except InvalidRequest as invalid:
                    exchange.send_json(400, self.error_body(400, invalid.message, invalid.param))
                return
        message = f"Invalid URL ({exchange.command} {exchange.route_path})"
        exchange.send_json(404, self.error_body(404, message))

    def _record(self, exchange: FakeRequestHandler) -> None:
        entry = {
            "method": exchange.command,
            "path": exchange.path,
            "headers": {name.lower(): value for name, value in exchange.headers.items()},
            "body": exchange.body,
            "client_closed": False,  # the client hung up before the answer ended
        }
        exchange.record = entry
        with self._lock:
            self._requests.append(entry)

    def _hold(self, exchange: FakeRequestHandler) -> None:
        """Leave the request unanswered until the client hangs up or the server stops."""
        sock = exchange.connection
        while not self._stopping.wait(0.05):
            readable, _, _ = select.select([sock], [], [], 0)
            # Readable with nothing to read means the client closed its end.
            if readable and not sock.recv(1, socket.MSG_PEEK):
                exchange.record["client_closed"] = True
                return

    def _control(self, exchange: FakeRequestHandler) -> None:
        match exchange.command, exchange.route_path:
            case "POST", "/_fake/config":
                changes = exchange.body if exchange.raw_body else {}
                if not isinstance(changes, dict):
                    exchange.send_json(400, {"error": "body must be a JSON object of knobs"})
                    return
                try:
                    knobs = self.configure(**changes)
                except (TypeError, ValueError) as error:
                    exchange.send_json(400, {"error": str(error)})
                    return
                exchange.send_json(200, asdict(knobs))
            case "POST", "/_fake/reset":
                exchange.send_json(200, asdict(self.reset()))
            case "GET", "/_fake/requests":
                exchange.send_json(200, self.requests)
            case "DELETE", "/_fake/requests":
                self.clear_requests()
                exchange.send_json(200, [])
            case method, path:
                exchange.send_json(404, {"error": f"no control endpoint {method} {path}"})


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def add_knob_arguments(parser: argparse.ArgumentParser) -> None:
    """Every knob as a ``--flag`` with its help; unset flags stay out of the parsed options."""
    for knob in fields(Knobs):
        flag = "--" + knob.name.replace("_", "-")
        kind = _KNOB_TYPES[knob.name]
        typed: dict[str, Any] = {"action": "store_true"} if kind is bool else {"type": kind}
        # SUPPRESS leaves unset flags out of the namespace, so Knobs keeps its own defaults.
        parser.add_argument(
            flag, dest=knob.name, default=argparse.SUPPRESS, help=knob.metadata["help"], **typed
        )


def knob_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The knobs among parsed options (other keys, such as a framework's own flags, are dropped)."""
    return {name: value for name, value in options.items() if name in _KNOB_TYPES}


def serve_forever(server: FakeProviderServer) -> None:
    """Serve until Ctrl-C or SIGTERM, after announcing the base URL on stdout (callers read that line)."""
    with server:
        print(f"fake {server.provider_name} provider listening on {server.base_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


def run_cli(server_cls: type[FakeProviderServer], argv: Sequence[str] | None = None) -> int:
    """Serve ``server_cls`` until Ctrl-C, with every knob available as a ``--flag``."""
    parser = argparse.ArgumentParser(
        description=f"Serve a fake {server_cls.provider_name} provider until Ctrl-C. "
        f"Knobs can be changed at runtime with POST {CONTROL_PREFIX}config."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    add_knob_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        server = server_cls(port=options["port"], host=options["host"], **knob_options(options))
    except (TypeError, ValueError, OSError) as error:
        parser.error(str(error))
    serve_forever(server)
    return 0
