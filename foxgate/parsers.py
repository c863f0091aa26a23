"""Request bodies: the size cap at the ASGI door, chunked bodies made readable, and the strict JSON parser."""

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from rest_framework.parsers import JSONParser

from foxgate.errors import InvalidParam, InvalidRequest, RequestTooLarge
from foxgate.middleware import request_id_for

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """ASGI wrapper: bodies over FOXGATE_MAX_REQUEST_BYTES are 413 before Django reads them, and a chunked
    body reaches Django with its Content-Length.

    Django's ASGI handler reads the whole body before any middleware runs, whatever its size; and Django
    REST framework treats a request without Content-Length as having no body (a chunked submit then
    failed as 422 "model: required"). Here a declared length over the cap is refused unread, and a body
    without one is read up to the cap, then handed on with the length it turned out to have."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = settings.MAX_REQUEST_BYTES
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > limit:
                # Read and drop a body up to twice the cap: clients that send it all before reading the
                # answer (most do) then get the 413 rather than a reset connection.
                unread = int(declared) <= 2 * limit and await _drain(receive, limit)
                await self._refuse(scope, send, limit, keep_alive=unread)
                return
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before sending it all
                return
            body += message.get("body", b"")
            if len(body) > limit:
                drained = not message.get("more_body", False) or await _drain(receive, limit)
                await self._refuse(scope, send, limit, keep_alive=drained)
                return
            if not message.get("more_body", False):
                break
        scope = {
            **scope,
            "headers": [
                *((name, value) for name, value in scope["headers"] if name != b"transfer-encoding"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
        first: list[Message] = [{"type": "http.request", "body": bytes(body), "more_body": False}]

        async def replay() -> Message:
            return first.pop() if first else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, limit: int, *, keep_alive: bool) -> None:
        request_id = request_id_for(dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1"))
        error = RequestTooLarge(limit)
        logger.warning("refused a request body over %d bytes: %s %s", limit, scope["method"], scope["path"])
        await send(
            {
                "type": "http.response.start",
                "status": error.status_code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"x-request-id", request_id.encode()),
                    # With the body left unread, the connection cannot carry another request.
                    *([] if keep_alive else [(b"connection", b"close")]),
                ],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(error.envelope()).encode()})


async def _drain(receive: Receive, most: int) -> bool:
    """Read and drop the rest of a body, up to `most` bytes: True when it ended within that."""
    dropped = 0
    while dropped <= most:
        message = await receive()
        if message["type"] != "http.request":
            return False
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            return dropped <= most
    return False


class LimitedJSONParser(JSONParser):
    """JSON bodies up to FOXGATE_MAX_REQUEST_BYTES, each key at most once per object, and no NUL in strings.

    DRF reads the request stream directly, past Django's own upload limit, so the cap is enforced here:
    on the declared length first, then on what is actually read. A repeated key would silently keep
    the last value, and PostgreSQL cannot store a NUL character: both are refused, naming where."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        limit = settings.MAX_REQUEST_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(limit)
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise RequestTooLarge(limit)
        try:
            data = json.loads(body, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidRequest("The request body is not valid JSON: it nests too deeply.") from None
        _refuse_nul(data, "")
        return data


def _reject_constant(name: str) -> None:
    # Python's json accepts NaN and Infinity; JSON does not, and no field here can take them.
    raise ValueError(f"{name} is not a JSON value")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            # Not a ValueError: that would be reported as a syntax error, without the key.
            raise InvalidRequest(
                f"The request body is not valid JSON for this API: the key {key!r} appears twice in one "
                "object.",
                param=key,
            )
        found[key] = value
    return found


def _refuse_nul(value: Any, path: str) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidParam(f"{path or 'body'}: must not contain the NUL character", param=path or None)
    elif isinstance(value, dict):
        for key, inner in value.items():
            _refuse_nul(key, path)
            _refuse_nul(inner, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            _refuse_nul(inner, f"{path}[{index}]")
