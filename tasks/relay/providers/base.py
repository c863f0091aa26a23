"""What every provider adapter shares: the normalized request, the one error type, the HTTP plumbing.

Adapters never see tenants, keys or money. Each turns one `UpstreamRequest` into one upstream call and
returns an OpenAI `chat.completion` dict (`complete`) or yields `chat.completion.chunk` dicts (`stream`),
or raises `UpstreamError` saying whether another attempt may succeed.
"""

import asyncio
import base64
import json
import re
import struct
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import httpx
from django.conf import settings
from httpx_aiohttp import AiohttpTransport
from httpx_sse import EventSource, SSEError

T = TypeVar("T")

KEEPALIVE_EXPIRY = 5.0  # seconds an idle upstream connection is kept: httpx's default

# Upstream error messages sometimes quote the credential they refused ("Incorrect API key provided: sk-…").
_SECRET_LOOKING = re.compile(r"\b(sk-[A-Za-z0-9_\-*.]{6,}|AIza[0-9A-Za-z_\-]{10,}|xai-[A-Za-z0-9]{10,})")


@dataclass(frozen=True)
class UpstreamRequest:
    model: str  # the name the upstream knows the model by
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float | None = None
    reasoning: bool | None = None
    thinking: dict[str, Any] | None = None  # Anthropic's thinking settings, when the caller gave them
    default_max_tokens: int = 4096  # for APIs that require max_tokens when the caller gave none
    extra: dict[str, Any] = field(default_factory=dict)  # the OpenAI chat parameters: top_p, stop, tools...
    embedding: bool = False  # embed each user message's text rather than answer the conversation


@dataclass(frozen=True)
class Upstream:
    """Where and how to call: the parts of a channel an adapter needs, and nothing else."""

    base_url: str
    api_key: str
    timeout: float


class UpstreamError(Exception):
    """An upstream call that did not produce a completion.

    `code` is the task error code of API.md (upstream_error, upstream_timeout, upstream_rejected,
    content_filtered); `retryable` says whether another attempt, on another channel, may succeed;
    `auth_failure` says the channel's own credentials were refused, so the channel should be disabled.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        retryable: bool,
        http_status: int | None = None,
        retry_after: float | None = None,
        auth_failure: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.http_status = http_status
        self.retry_after = retry_after
        self.auth_failure = auth_failure


def error_for_status(http_status: int, message: str, retry_after: str | None = None) -> UpstreamError:
    """Classify an upstream HTTP error once, for every adapter.

    Retryable: 408, 409, 429 (with its Retry-After), 5xx and Anthropic's 529 overloaded. Permanent: the
    other 4xx; 401 and 403 also mean the channel's key is bad."""
    retryable = http_status in (408, 409, 429) or http_status >= 500
    try:
        delay = float(retry_after) if retry_after else None
    except ValueError:
        delay = None
    return UpstreamError(
        f"upstream answered {http_status}: {message}",
        code="upstream_error" if retryable else "upstream_rejected",
        retryable=retryable,
        http_status=http_status,
        retry_after=delay,
        auth_failure=http_status in (401, 403),
    )


def content_filtered(message: str) -> UpstreamError:
    return UpstreamError(message, code="content_filtered", retryable=False)


def malformed(message: str) -> UpstreamError:
    return UpstreamError(f"upstream answer is malformed: {message}", code="upstream_error", retryable=True)


class Relay(ABC):
    def __init__(self, client: httpx.AsyncClient, upstream: Upstream) -> None:
        self.client = client
        self.upstream = upstream

    @abstractmethod
    async def complete(self, request: UpstreamRequest) -> dict[str, Any]:
        """Make one upstream call and return an OpenAI `chat.completion` dict."""

    @abstractmethod
    def stream(self, request: UpstreamRequest) -> AsyncIterator[dict[str, Any]]:
        """One streaming upstream call, yielding `chat.completion.chunk` dicts; the last carries usage."""

    async def embed(self, request: UpstreamRequest) -> dict[str, Any]:
        """One embeddings call for the request's inputs, returning OpenAI's embeddings list."""
        raise UpstreamError(
            f"{type(self).__name__.removesuffix('Relay')} channels do not serve embeddings",
            code="upstream_rejected",
            retryable=True,  # another channel of the model may
        )

    def logprobs_refused(self, request: UpstreamRequest) -> None:
        """For a provider that returns no logprobs: refuse a request for them, which another channel of
        the model may serve, rather than answer without them."""
        if "logprobs" in request.extra:
            raise UpstreamError(
                f"{type(self).__name__.removesuffix('Relay')} channels do not return logprobs",
                code="upstream_rejected",
                retryable=True,
            )

    def redact(self, text: str) -> str:
        """Text safe to store and show: the channel's key, and anything shaped like a key, masked."""
        if self.upstream.api_key:
            text = text.replace(self.upstream.api_key, "***")
        return _SECRET_LOOKING.sub("***", text)

    async def post_json(self, url: str, *, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        """POST and return the JSON answer, turning every transport and HTTP failure into UpstreamError."""
        async with self._calling():
            response = await self.client.post(url, headers=headers, json=body, timeout=self.upstream.timeout)
        await self._raise_for_status(response)
        try:
            answer = response.json()
        except ValueError:
            raise malformed("the body is not JSON") from None
        if not isinstance(answer, dict):
            raise malformed("the body is not a JSON object")
        return answer

    @asynccontextmanager
    async def post_events(
        self, url: str, *, headers: dict[str, str], body: dict[str, Any]
    ) -> AsyncIterator[AsyncIterator[tuple[str, Any]]]:
        """POST expecting server-sent events; yields an iterator of (event name, parsed JSON data).

        `data: [DONE]` ends the iteration; a dropped connection or a malformed event raises UpstreamError."""
        async with self._calling():
            request = self.client.build_request(
                "POST", url, headers=headers, json=body, timeout=self.upstream.timeout
            )
            response = await self.client.send(request, stream=True)
        try:
            await self._raise_for_status(response)
            yield self._events(response)
        finally:
            await response.aclose()

    async def _events(self, response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
        async with self._calling():
            try:
                async for sse in EventSource(response).aiter_sse():
                    if sse.data == "[DONE]":
                        return
                    if not sse.data:
                        continue
                    try:
                        yield sse.event, json.loads(sse.data)
                    except ValueError:
                        raise malformed(f"an event's data is not JSON: {sse.data[:100]!r}") from None
            except SSEError as error:
                raise malformed(f"not an event stream ({error})") from None

    @asynccontextmanager
    async def _calling(self) -> AsyncIterator[None]:
        """Transport failures as UpstreamError: timeouts, refused and dropped connections."""
        try:
            yield
        except (httpx.TransportError, aiohttp.ClientError, TimeoutError) as exc:
            # httpx-aiohttp re-raises aiohttp's errors as httpx's, not always as the right one (a refused
            # connection becomes ConnectTimeout): what happened is the aiohttp error it wraps.
            cause = exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError | TimeoutError) else exc
            if isinstance(cause, TimeoutError | httpx.TimeoutException):
                raise UpstreamError(
                    f"upstream timed out after {self.upstream.timeout:g}s ({type(cause).__name__})",
                    code="upstream_timeout",
                    retryable=True,
                ) from exc
            raise UpstreamError(
                f"upstream connection failed: {type(cause).__name__}", code="upstream_error", retryable=True
            ) from exc

    async def _raise_for_status(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        await response.aread()
        message = self.redact(self.error_message(response))
        error = error_for_status(response.status_code, message, response.headers.get("Retry-After"))
        error.auth_failure = error.auth_failure or self.refused_credentials(response)
        raise error

    def refused_credentials(self, response: httpx.Response) -> bool:
        """Whether an error that is not 401/403 still says the channel's key is bad (providers differ)."""
        return False

    def error_message(self, response: httpx.Response) -> str:
        """The provider's own error message from its error body (each provider nests it differently)."""
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            return response.text[:300]
        if isinstance(error, dict):
            return str(error.get("message", error))[:300]
        return str(error)[:300]


def completion(
    *,
    model: str,
    content: str,
    finish_reason: str | None,
    usage: dict[str, Any],
    reasoning: str = "",
    thinking_blocks: list[dict[str, Any]] | None = None,
    response_id: str = "",
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An OpenAI `chat.completion` built from any provider's parts. With tool calls and no text, the
    content is null, as OpenAI sends it. Claude's thinking comes as text (`reasoning_content`) and as
    its signed blocks (`thinking_blocks`), which a client sends back for Claude to read again."""
    text = content if content or not tool_calls else None
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = reasoning
    if thinking_blocks:
        message["thinking_blocks"] = thinking_blocks
    return {
        "id": response_id or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage,
    }


def chunk(
    *,
    chunk_id: str,
    model: str,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An OpenAI `chat.completion.chunk`; with `usage` and no delta, the usage-only last chunk."""
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    )
    body: dict[str, Any] = {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return body


def usage(
    *, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, reasoning_tokens: int = 0
) -> dict[str, Any]:
    """OpenAI's usage object, with the details other providers report mapped into it."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
    }


def embeddings(
    model: str, vectors: list[list[float]], *, prompt_tokens: int, encoding_format: str
) -> dict[str, Any]:
    """OpenAI's embeddings list built from any provider's vectors, base64 (little-endian float32) when
    asked for, as OpenAI encodes them."""
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            if encoding_format == "base64"
            else vector,
        }
        for index, vector in enumerate(vectors)
    ]
    usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}


def tool_call(call_id: str, name: str, arguments: dict[str, Any] | str) -> dict[str, Any]:
    """An OpenAI tool call: the arguments a JSON object in a string."""
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, separators=(",", ":"))
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool_arguments(call: dict[str, Any]) -> dict[str, Any]:
    """A tool call's arguments as an object (validated as one when the caller sent them)."""
    return json.loads(call["function"]["arguments"] or "{}")


def text_of(content: str | list[dict[str, Any]] | None) -> str:
    """A message's text: its string, or its text parts joined."""
    if content is None:
        return ""
    return content if isinstance(content, str) else "".join(p["text"] for p in content if p["type"] == "text")


def data_uri_parts(url: str) -> tuple[str, str] | None:
    """(media type, base64 payload) of a data URI, or None for a link."""
    if not url.startswith("data:"):
        return None
    header, _, payload = url.partition(",")
    return header[len("data:") :].split(";")[0], payload


def pooled_client(*, max_connections: int) -> httpx.AsyncClient:
    """A client for upstream calls: httpx's interface over aiohttp's connection pool.

    httpx's own pool (httpcore) spends more CPU per call the more calls it holds open: measured with
    bench/transport.py against a 100 ms upstream, ~11 ms per call at 64 in flight and ~14 ms at 256,
    where aiohttp's stays near 1 ms (bench/results/transport.md); an engine holds hundreds. The
    transport is httpx-aiohttp's, the one the openai SDK offers. Idle connections close after httpx's
    default keep-alive expiry; certificates and proxies come from the environment (SSL_CERT_FILE,
    HTTPS_PROXY), as with httpx's own."""
    ssl_context = httpx.create_ssl_context()  # certifi, or SSL_CERT_FILE / SSL_CERT_DIR

    def session() -> aiohttp.ClientSession:  # made on the first call, inside the loop that uses it
        connector = aiohttp.TCPConnector(
            limit=max_connections, keepalive_timeout=KEEPALIVE_EXPIRY, ssl=ssl_context
        )
        return aiohttp.ClientSession(connector=connector, trust_env=True)

    return httpx.AsyncClient(timeout=settings.UPSTREAM_TIMEOUT, transport=AiohttpTransport(client=session))


# One pooled client per worker process, on one event loop that lives as long as the process: jobs run
# one after another in a worker, and each runs its async core on this loop so connections are reused.
_loop: asyncio.AbstractEventLoop | None = None
_client: httpx.AsyncClient | None = None


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop.run_until_complete(coro)


def http_client() -> httpx.AsyncClient:
    global _client
    if _client is None:
        _client = pooled_client(max_connections=100)
    return _client
