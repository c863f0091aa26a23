from tasks.relay.providers.anthropic import AnthropicRelay
from tasks.relay.providers.base import (
    Relay,
    Upstream,
    UpstreamError,
    UpstreamRequest,
    http_client,
    pooled_client,
    run_async,
)
from tasks.relay.providers.gemini import GeminiRelay
from tasks.relay.providers.openai import OpenAIRelay

# Channel.provider → the adapter for its wire format
RELAYS: dict[str, type[Relay]] = {"openai": OpenAIRelay, "anthropic": AnthropicRelay, "gemini": GeminiRelay}

__all__ = [
    "RELAYS",
    "Relay",
    "Upstream",
    "UpstreamError",
    "UpstreamRequest",
    "http_client",
    "pooled_client",
    "run_async",
]
