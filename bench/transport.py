"""CPU per upstream call of the worker's HTTP client, by transport (issue 11).

Starts the bundled fake OpenAI upstream on core 1 and, on core 0, makes the same chat-completion call
through the relay with each client: httpx with its own transport (httpcore over anyio) and the worker's
`pooled_client` (httpx over aiohttp). Reports this process's CPU time per call, alternating the two
several times because the machine is noisy.

    .venv/bin/python bench/transport.py [--calls 3000] [--concurrency 16] [--rounds 3] [--latency 0]
"""

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable

import django
import httpx
from harness import ROOT, pin
from side_by_side import GATEWAY_CORE, LOAD_CORE, set_latency, spawn, stop, wait_until_up

sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "foxgate.settings")
django.setup()

from tasks.relay.providers import Upstream, UpstreamRequest, pooled_client  # noqa: E402
from tasks.relay.providers.openai import OpenAIRelay  # noqa: E402

REQUEST = UpstreamRequest(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}], max_tokens=16
)


async def cpu_per_call(
    make_client: Callable[[], httpx.AsyncClient], url: str, calls: int, concurrency: int
) -> float:
    """Milliseconds of this process's CPU per completed call, after a warm-up."""
    client = make_client()
    relay = OpenAIRelay(client, Upstream(base_url=url, api_key="sk-bench", timeout=30))
    left = calls

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await relay.complete(REQUEST)

    try:
        await asyncio.gather(*(relay.complete(REQUEST) for _ in range(concurrency)))
        start = time.process_time()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return 1000 * (time.process_time() - start) / calls
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0, help="the fake upstream's delay, seconds")
    parser.add_argument("--fake-port", type=int, default=18810)
    args = parser.parse_args()

    fake_url = f"http://127.0.0.1:{args.fake_port}"
    fake = spawn(
        "fake", [sys.executable, str(ROOT / "bench" / "side_by_side.py"), "--serve-fake", str(args.fake_port)]
    )
    clients = {
        "httpx, its own transport": lambda: httpx.AsyncClient(
            limits=httpx.Limits(max_connections=args.concurrency)
        ),
        "pooled_client (httpx over aiohttp)": lambda: pooled_client(max_connections=args.concurrency),
    }
    try:
        wait_until_up(f"{fake_url}/_fake/requests", fake, timeout=30)
        pin(fake.pid, LOAD_CORE)
        pin(os.getpid(), GATEWAY_CORE)
        set_latency(fake_url, args.latency)
        print(
            f"# {args.calls} calls x {args.rounds} rounds, {args.concurrency} at once, upstream "
            f"{args.latency * 1000:g} ms; CPU ms per call"
        )
        for round_ in range(1, args.rounds + 1):
            for name, make_client in clients.items():
                ms = asyncio.run(cpu_per_call(make_client, f"{fake_url}/v1", args.calls, args.concurrency))
                print(f"round {round_}  {name:<36} {ms:.3f}")
    finally:
        stop(fake)


if __name__ == "__main__":
    main()
