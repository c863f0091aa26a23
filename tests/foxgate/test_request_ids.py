"""The request ids FoxGate makes for clients that send none (API.md: every response carries one)."""

import os
import re

from foxgate.middleware import request_id_for


def fresh_in_a_forked_child() -> str:
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one id, then gone without running anything of pytest's
        os.write(writable, request_id_for("").encode())
        os._exit(0)
    os.close(writable)
    os.waitpid(pid, 0)
    with os.fdopen(readable) as pipe:
        return pipe.read()


def test_fresh_request_ids_never_repeat_in_a_process_nor_in_one_forked_from_it() -> None:
    here = [request_id_for("") for _ in range(10_000)]
    children = [fresh_in_a_forked_child() for _ in range(3)]

    assert all(re.fullmatch(r"req_[0-9a-f]{32}", request_id) for request_id in here + children)
    assert len(set(here + children)) == len(here) + len(children)
    # a child's ids come from a counter of its own: the first id of each would be the same otherwise
    assert len({child[:20] for child in children} | {here[0][:20]}) == 4


def test_a_client_request_id_is_kept_and_a_malformed_one_replaced() -> None:
    assert request_id_for("trace-7:a.b_C") == "trace-7:a.b_C"
    assert request_id_for("bad id\n").startswith("req_")
