from tasks.relays.base import Relay, Upstream, UpstreamError, UpstreamRequest, http_client, run_async
from tasks.relays.openai import OpenAIRelay

RELAYS: dict[str, type[Relay]] = {"openai": OpenAIRelay}

__all__ = ["RELAYS", "Relay", "Upstream", "UpstreamError", "UpstreamRequest", "http_client", "run_async"]
