"""The operator's "test connection": one tiny completion through a channel's adapter, run by the cluster.

The admin only records that a probe was asked for and enqueues `tasks.jobs.channel_probe_job`; this is
the one place a probe reaches an upstream, so the web process never opens an upstream connection. A probe
is an operator's check, not traffic: its outcome goes to the channel's probe_* columns and nowhere else.
It leaves the breaker, `enabled` and the attempt history alone (a failing probe must not route traffic
away, nor a passing one close a breaker the workers opened), and the upstream key is never stored or
logged, even when the upstream quotes it back.
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from tasks.models import Channel
from tasks.relay.providers import RELAYS, Upstream, UpstreamError, UpstreamRequest, http_client, run_async

logger = logging.getLogger(__name__)

PROBE_PROMPT = "Say OK."
PROBE_MAX_TOKENS = 5
# An operator waits on the page for the answer; a channel's own timeout may be minutes long.
PROBE_TIMEOUT_SECONDS = 30.0
MESSAGE_LIMIT = 500


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    latency_ms: int | None  # None when no call was made
    message: str


def channel_probe(*, channel_id: int) -> ProbeResult | None:
    """Probe the channel and record the result on it; None when the channel is gone.

    The result is written by a conditional update on the request time read before the call: if the
    operator asked again meanwhile, this (older) answer is dropped and the page stays pending until the
    newer probe lands. A redelivered job just probes again, which is harmless."""
    channel = Channel.objects.filter(pk=channel_id).first()
    if channel is None:
        return None
    requested_at = channel.probe_requested_at
    model = channel.served_models.order_by("name").first()
    if model is None:
        result = ProbeResult(ok=False, latency_ms=None, message="This channel serves no model to test with.")
    else:
        result = _call(channel, model.name)
    _record(channel_id, requested_at, result)
    return result


def _call(channel: Channel, public_name: str) -> ProbeResult:
    # The engine's adapter and pooled client, with a probe's short timeout.
    upstream = Upstream(
        base_url=channel.base_url,
        api_key=channel.api_key,
        timeout=min(channel.timeout, PROBE_TIMEOUT_SECONDS),
    )
    relay = RELAYS[channel.provider](http_client(), upstream)
    request = UpstreamRequest(
        model=channel.upstream_model(public_name),
        messages=[{"role": "user", "content": PROBE_PROMPT}],
        max_tokens=PROBE_MAX_TOKENS,
        default_max_tokens=PROBE_MAX_TOKENS,
    )
    started = time.monotonic()
    try:
        run_async(relay.complete(request))
    except UpstreamError as error:
        message = relay.redact(f"{public_name} failed: {error.message}")
        logger.info("probe of channel %s failed: %s", channel.pk, message)
        return ProbeResult(ok=False, latency_ms=_since(started), message=message)
    except Exception as error:  # an adapter bug must still end the "pending" state
        # The type only: an unexpected exception's text is not known to be free of the key.
        message = f"{public_name} failed: the probe crashed ({type(error).__name__})"
        logger.error("probe of channel %s crashed: %s", channel.pk, type(error).__name__)
        return ProbeResult(ok=False, latency_ms=_since(started), message=message)
    latency = _since(started)
    return ProbeResult(ok=True, latency_ms=latency, message=f"{public_name} answered in {latency} ms.")


def _record(channel_id: int, requested_at: datetime | None, result: ProbeResult) -> bool:
    """Only the probe columns, so the breaker state the workers keep is never written back."""
    updated = Channel.objects.filter(pk=channel_id, probe_requested_at=requested_at).update(
        probe_finished_at=timezone.now(),
        probe_ok=result.ok,
        probe_latency_ms=result.latency_ms,
        probe_message=result.message[:MESSAGE_LIMIT],
    )
    return updated == 1


def _since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
