from tasks.relays.anthropic import AnthropicRelay
from tasks.relays.base import Relay, Upstream, UpstreamError, UpstreamRequest, http_client, run_async
from tasks.relays.gemini import GeminiRelay
from tasks.relays.openai import OpenAIRelay

# Channel.provider → the adapter for its wire format
RELAYS: dict[str, type[Relay]] = {"openai": OpenAIRelay, "anthropic": AnthropicRelay, "gemini": GeminiRelay}

__all__ = ["RELAYS", "Relay", "Upstream", "UpstreamError", "UpstreamRequest", "http_client", "run_async"]
