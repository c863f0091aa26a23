"""The relay threads are handed statements one per thread, a finishing generation's before new claims."""

import asyncio

from tasks.relay.engine import RelayThreads

CLAIM, SETTLE = 1, 0


async def take(threads: RelayThreads, rank: int, name: str, order: list[str]) -> None:
    await threads.acquire(rank)
    order.append(name)
    await asyncio.sleep(0)  # holds its thread until the scheduler runs the others once
    threads.release()


def test_a_settlement_waiting_for_a_thread_goes_before_claims_that_queued_earlier() -> None:
    async def scenario() -> list[str]:
        threads, order = RelayThreads(1), []
        await threads.acquire(SETTLE)  # every thread busy
        waiting = [asyncio.create_task(take(threads, CLAIM, f"claim {n}", order)) for n in range(3)]
        waiting.append(asyncio.create_task(take(threads, SETTLE, "settle", order)))
        await asyncio.sleep(0)  # all four are waiting now
        threads.release()
        await asyncio.gather(*waiting)
        return order

    assert asyncio.run(scenario()) == ["settle", "claim 0", "claim 1", "claim 2"]


def test_a_waiter_cancelled_as_it_was_handed_a_thread_passes_the_thread_on() -> None:
    async def scenario() -> tuple[list[str], int]:
        threads, order = RelayThreads(1), []
        await threads.acquire(SETTLE)
        cancelled = asyncio.create_task(take(threads, SETTLE, "cancelled", order))
        after = asyncio.create_task(take(threads, CLAIM, "after", order))
        await asyncio.sleep(0)
        threads.release()  # hands the thread to the first waiter...
        cancelled.cancel()  # ...which is cancelled (a drain) before it runs
        await asyncio.gather(cancelled, after, return_exceptions=True)
        return order, threads.free

    order, free = asyncio.run(scenario())
    assert order == ["after"]
    assert free == 1  # no thread lost
