"""Start FoxGate's processes side by side: the fake provider, the web server and the worker cluster.

Used by the `demo` command and by the end-to-end tests, so both run exactly the processes production
runs (`uvicorn foxgate.asgi:application` and `foxgate qcluster`), each as its own OS process.
Children run `python -m foxgate`, so the stack starts the same from a checkout or an installed wheel.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from django.conf import settings

from foxgate.database import release_exited_processes


class StackError(RuntimeError):
    pass


@dataclass
class Stack:
    web_port: int
    fake_port: int
    env: dict[str, str] = field(default_factory=dict)
    web_workers: int = 1
    extra_web_ports: tuple[int, ...] = ()  # more web servers, each its own uvicorn process
    log_dir: Path | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def web_urls(self) -> list[str]:
        """Every web server's URL: each a separate process sharing only the database."""
        return [f"http://127.0.0.1:{port}" for port in (self.web_port, *self.extra_web_ports)]

    @property
    def fake_url(self) -> str:
        return f"http://127.0.0.1:{self.fake_port}"

    def start(self, timeout: float = 30) -> "Stack":
        python = sys.executable
        self._spawn("fake provider", [python, "-m", "foxgate", "fakeprovider", "--port", str(self.fake_port)])
        for number, port in enumerate((self.web_port, *self.extra_web_ports)):
            uvicorn = [
                "-m",
                "uvicorn",
                "foxgate.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
            self._spawn(
                f"web {number}" if number else "web",
                [python, *uvicorn, "--workers", str(self.web_workers), "--no-access-log"],
            )
        self._spawn("worker cluster", [python, "-m", "foxgate", "qcluster"])
        try:
            self._wait_until_up(f"{self.fake_url}/_fake/requests", timeout)
            for url in self.web_urls:
                self._wait_until_up(f"{url}/healthz", timeout)
        except StackError:
            self.stop()
            raise
        return self

    def stop(self, grace: float = 10) -> None:
        """Ask every process group to stop as on Ctrl-C, then kill what is left after `grace` seconds.

        Signalling the group, not just the process we started, reaches the workers a process forked."""
        for process in self.processes.values():
            _signal_group(process, signal.SIGINT)
        deadline = time.monotonic() + grace
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            _signal_group(process, signal.SIGKILL)  # stragglers: forked workers outliving their parent
            process.wait()
        self.processes.clear()
        # Our children attached to the embedded database too; let it stop once we are the last user.
        release_exited_processes(settings.DATA_DIR)

    def exited(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def _spawn(self, name: str, argv: list[str]) -> None:
        if self.log_dir is None:
            output = None  # inherit: the demo shows every process's log in its own terminal
        else:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = open(self.log_dir / f"{name.replace(' ', '-')}.log", "ab")  # noqa: SIM115
        try:
            self.processes[name] = subprocess.Popen(  # noqa: S603
                argv,
                # The data folder defaults to one under the working directory: name ours, so every
                # child attaches to this process's embedded database wherever it is started.
                env={**os.environ, "FOXGATE_DATA_DIR": str(settings.DATA_DIR), **self.env},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() reaches everything it forks
                preexec_fn=default_sigint,
            )
        finally:
            if output is not None:
                output.close()  # the child has its own copy of the descriptor

    def _wait_until_up(self, url: str, timeout: float) -> None:
        wait_until_up(url, timeout, self.exited)


def wait_until_up(url: str, timeout: float, exited: Callable[[], list[str]]) -> None:
    """Poll `url` until it answers 200; `exited` names the processes that died meanwhile, if any."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if exited():
            raise StackError(f"{', '.join(exited())} exited during startup")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise StackError(f"{url} did not answer within {timeout:g}s")


def default_sigint() -> None:
    """Children answer Ctrl-C even when we were started with SIGINT ignored (as `cmd &` does)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has exited already
        os.killpg(process.pid, signum)
