"""The worker's upstream client keeps connections alive between calls, and opens a new one when the
upstream closed the one it kept."""

import asyncio
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from tasks.relay.providers import Upstream, UpstreamRequest, pooled_client
from tasks.relay.providers.openai import OpenAIRelay

ANSWER = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
).encode()

HEAD = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(ANSWER)}\r\n\r\n".encode()


class KeepAliveUpstream:
    """An HTTP/1.1 upstream that answers each request with a completion on a kept-alive connection, or,
    with `close_after_answer`, closes each connection once it answered (without saying so in a header,
    as a server whose idle timeout ran out does)."""

    def __init__(self, *, close_after_answer: bool) -> None:
        self.close_after_answer = close_after_answer
        self.connections = 0
        self.closed = threading.Semaphore(0)  # released each time it closed a connection after answering
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while True:
                request_line = reader.readline()
                if not request_line:
                    return
                length = 0
                while (line := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                reader.read(length)
                conn.sendall(HEAD + ANSWER)
                if self.close_after_answer:
                    conn.shutdown(socket.SHUT_RDWR)
                    self.closed.release()
                    return


@pytest.fixture
def upstream(request) -> Iterator[KeepAliveUpstream]:
    server = KeepAliveUpstream(close_after_answer=request.param)
    yield server
    server.listener.close()


async def two_calls(server: KeepAliveUpstream) -> list[str]:
    client = pooled_client(max_connections=4)
    relay = OpenAIRelay(client, Upstream(base_url=server.base_url, api_key="", timeout=5))
    request = UpstreamRequest(model="m", messages=[{"role": "user", "content": "Hi"}])
    try:
        first = await relay.complete(request)
        if server.close_after_answer:
            assert await asyncio.to_thread(server.closed.acquire, timeout=5)
        second = await relay.complete(request)
    finally:
        await client.aclose()
    return [first["choices"][0]["message"]["content"], second["choices"][0]["message"]["content"]]


@pytest.mark.parametrize("upstream", [False], indirect=True)
def test_consecutive_calls_share_one_kept_alive_connection(upstream):
    assert asyncio.run(two_calls(upstream)) == ["hi", "hi"]
    assert upstream.connections == 1


@pytest.mark.parametrize("upstream", [True], indirect=True)
def test_a_connection_the_upstream_closed_while_idle_is_replaced_not_reused(upstream):
    assert asyncio.run(two_calls(upstream)) == ["hi", "hi"]
    assert upstream.connections == 2
