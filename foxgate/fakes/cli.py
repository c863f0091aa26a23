"""Run a fake provider's command line the way the demo and benchmarks do, for the fakes' own tests."""

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from foxgate.stack import default_sigint


@contextmanager
def serving(provider: str, *args: str, command: bool = False) -> Iterator[str]:
    """`python -m foxgate.fakes.<provider> --port 0 ARGS` running, or with `command` the operator's
    `python -m foxgate fakeprovider --provider <provider> --port 0 ARGS`; yields the base URL it announces."""
    if command:
        argv = [sys.executable, "-m", "foxgate", "fakeprovider", "--provider", provider]
    else:
        argv = [sys.executable, "-m", f"foxgate.fakes.{provider}"]
    process = subprocess.Popen(  # noqa: S603
        [*argv, "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
        # Ctrl-C must reach it even where this process ignores SIGINT, which a child would inherit.
        preexec_fn=default_sigint,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith(f"fake {provider} provider listening on http://127.0.0.1:"), line
        yield line.rsplit(" ", 1)[1]
    finally:
        # Ctrl-C, as an operator stops it: the command then detaches from the embedded database cleanly.
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
