"""What every provider adapter shares: the normalized request, the one error type, the HTTP client.

Adapters never see tenants, keys or money. Each turns one `UpstreamRequest` into one upstream call and
returns an OpenAI `chat.completion` dict, or raises `UpstreamError` saying whether a retry may help.
"""

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from django.conf import settings

T = TypeVar("T")


@dataclass(frozen=True)
class UpstreamRequest:
    model: str  # the name the upstream knows the model by
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float | None = None
    reasoning: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # pass-through parameters such as top_p, stop


@dataclass(frozen=True)
class Upstream:
    """Where and how to call: the parts of a channel an adapter needs, and nothing else."""

    base_url: str
    api_key: str
    timeout: float


class UpstreamError(Exception):
    """An upstream call that did not produce a completion.

    `code` is the task error code of API.md (upstream_error, upstream_timeout, upstream_rejected,
    content_filtered); `retryable` says whether another attempt, maybe on another channel, may succeed.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        retryable: bool,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.http_status = http_status
        self.retry_after = retry_after


def error_for_status(http_status: int, message: str, retry_after: str | None = None) -> UpstreamError:
    """Classify an upstream HTTP error once, for every adapter."""
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
    )


class Relay(ABC):
    def __init__(self, client: httpx.AsyncClient, upstream: Upstream) -> None:
        self.client = client
        self.upstream = upstream

    @abstractmethod
    async def complete(self, request: UpstreamRequest) -> dict[str, Any]:
        """Make one upstream call and return an OpenAI `chat.completion` dict."""

    async def post_json(self, url: str, *, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        """POST and return the JSON answer, turning every transport and HTTP failure into UpstreamError."""
        try:
            response = await self.client.post(url, headers=headers, json=body, timeout=self.upstream.timeout)
        except httpx.TimeoutException as exc:
            raise UpstreamError(
                f"upstream timed out after {self.upstream.timeout:g}s ({type(exc).__name__})",
                code="upstream_timeout",
                retryable=True,
            ) from exc
        except httpx.TransportError as exc:
            raise UpstreamError(
                f"upstream connection failed: {type(exc).__name__}", code="upstream_error", retryable=True
            ) from exc
        if response.status_code >= 400:
            raise error_for_status(
                response.status_code, _error_message(response), response.headers.get("Retry-After")
            )
        try:
            return response.json()
        except ValueError as exc:
            raise UpstreamError(
                "upstream answered with a body that is not JSON", code="upstream_error", retryable=True
            ) from exc


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except ValueError:
        return response.text[:300]
    if isinstance(error, dict):
        return str(error.get("message", error))[:300]
    return str(error)[:300]


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
        _client = httpx.AsyncClient(
            timeout=settings.UPSTREAM_TIMEOUT,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )
    return _client
