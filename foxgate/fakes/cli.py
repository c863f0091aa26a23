"""Run a fake provider's command line the way the demo and benchmarks do, for the fakes' own tests."""

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def serving(provider: str, *args: str) -> Iterator[str]:
    """`python -m foxgate.fakes.<provider> --port 0 ARGS` running; yields the base URL it announces."""
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", f"foxgate.fakes.{provider}", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith(f"fake {provider} provider listening on http://127.0.0.1:"), line
        yield line.rsplit(" ", 1)[1]
    finally:
        process.terminate()
        process.wait(timeout=5)
