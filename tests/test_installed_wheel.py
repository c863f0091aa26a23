"""FoxGate as an operator installs it: the wheel, non-editable, in a fresh virtualenv, run from a folder
outside the checkout. Nothing here may lean on the source tree: the templates, the fakes, the data folder
and the `foxgate` command must all come from the installed package."""

import os
import queue
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from base64 import urlsafe_b64encode
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.helpers import poll_until_finished

pytestmark = pytest.mark.e2e

CHECKOUT = Path(__file__).resolve().parent.parent
# Crawled admin links that act rather than show: they would rotate the demo key or call a provider.
ACTING_LINKS = re.compile(r"/(logout|delete|rotate|test-connection)/")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    """A folder of our own, not pytest's: pytest prunes old base temp folders of the same user when a
    new run starts, which would delete the virtualenv under a long run sharing the machine."""
    with tempfile.TemporaryDirectory(prefix="foxgate-wheel-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def installed(work) -> Path:
    """The bin/ folder of a new virtualenv holding the wheel built from this checkout (dependencies come
    from pip's cache, filled when the checkout's own .venv was made)."""
    dist, venv = work / "dist", work / "venv"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", dist, CHECKOUT],
        check=True,
        timeout=300,
    )
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    wheel = next(dist.glob("foxgate-*.whl"))
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel], check=True, timeout=600
    )
    return venv / "bin"


@pytest.fixture
def site(work) -> Path:
    """An empty working folder outside the checkout, as an operator's would be."""
    folder = Path(tempfile.mkdtemp(prefix="site-", dir=work))
    assert not folder.is_relative_to(CHECKOUT)
    return folder


def operator_env(**extra: str) -> dict[str, str]:
    """The environment without the test run's database and data folder, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "FOXGATE_DATA_DIR"}}
    return {**env, **extra}


def foxgate(installed: Path, site: Path, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [installed / "foxgate", *args],
        cwd=site,
        env=env or operator_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )


def production_env() -> dict[str, str]:
    fernet_key = urlsafe_b64encode(secrets.token_bytes(32)).decode()
    return operator_env(
        FOXGATE_PRODUCTION="1",
        FOXGATE_SECRET_KEY=secrets.token_urlsafe(50),
        FOXGATE_API_KEY_PEPPERS=f"1={secrets.token_urlsafe(32)}",
        FOXGATE_SECRET_KEYS=fernet_key,
        FOXGATE_ALLOWED_HOSTS="gateway.example.com",
        # checks never connect; production only insists that a real server is named
        DATABASE_URL="postgresql://foxgate@db.example.com/foxgate",
    )


def test_installed_command_passes_the_deployment_checks_and_refuses_unsafe_production(installed, site):
    checked = foxgate(installed, site, "check", "--deploy", env=production_env())
    assert checked.returncode == 0, checked.stderr
    assert "System check identified" in checked.stdout + checked.stderr
    # production sends its session and CSRF cookies over HTTPS only
    assert "security.W012" not in checked.stderr and "security.W016" not in checked.stderr

    unsafe = foxgate(installed, site, "check", env=operator_env(FOXGATE_PRODUCTION="1"))
    assert unsafe.returncode != 0
    assert "refusing to start in production mode" in unsafe.stderr
    assert "FOXGATE_SECRET_KEY is the development default" in unsafe.stderr


def test_installed_package_runs_its_own_code_finds_every_template_and_keeps_data_in_the_working_folder(
    installed, site
):
    templates = sorted(
        str(path.relative_to(CHECKOUT / "templates")) for path in (CHECKOUT / "templates").rglob("*.html")
    )
    script = (
        "import foxgate; from django.template.loader import get_template; print('at', foxgate.__file__); "
        f"[print('at', get_template(name).origin.name) for name in {templates!r}]"
    )
    shell = foxgate(installed, site, "shell", "-c", script)
    assert shell.returncode == 0, shell.stderr
    package_file, *origins = [line[3:] for line in shell.stdout.splitlines() if line.startswith("at ")]
    site_packages = next((installed.parent / "lib").glob("python3*/site-packages"))
    assert Path(package_file).is_relative_to(site_packages)
    assert len(origins) == len(templates) and all(Path(o).is_relative_to(site_packages) for o in origins)

    migrated = foxgate(installed, site, "migrate", "--verbosity", "0")
    assert migrated.returncode == 0, migrated.stderr
    assert (site / ".foxgate" / "pgdata" / "PG_VERSION").is_file()
    assert not list(site_packages.glob("**/.foxgate"))


class Demo:
    """`foxgate demo` running in the background, its output read line by line as it comes."""

    def __init__(self, installed: Path, site: Path, port: int, fake_port: int) -> None:
        self.process = subprocess.Popen(
            [installed / "foxgate", "demo", "--port", str(port), "--fake-port", str(fake_port)],
            cwd=site,
            env=operator_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float) -> str:
        """Everything printed up to and including the line containing `text`."""
        deadline = time.monotonic() + timeout
        while not self.output or text not in self.output[-1]:
            remaining = deadline - time.monotonic()
            try:
                self.output.append(self.lines.get(timeout=max(0.0, remaining)))
            except queue.Empty:
                raise AssertionError(f"the demo never printed {text!r}:\n{''.join(self.output)}") from None
        return "".join(self.output)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)  # as Ctrl-C: the demo stops every process it started
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


@pytest.fixture
def demo(installed, site) -> Iterator[tuple[Demo, str]]:
    port = free_port()
    running = Demo(installed, site, port, free_port())
    try:
        yield running, f"http://127.0.0.1:{port}"
    finally:
        assert running.stop() == 0, "".join(running.output)


def admin_login(client: httpx.Client, password: str) -> None:
    base = str(client.base_url).rstrip("/")
    form = client.get("/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token, form.text
    signed_in = client.post(
        "/admin/login/",
        data={"username": "admin", "password": password, "csrfmiddlewaretoken": token[1]},
        headers={"Referer": f"{base}/admin/login/"},
    )
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/admin/", signed_in.text


def crawl_admin(client: httpx.Client) -> dict[str, int]:
    """Every admin page reachable by a link from the index (filters and sort orders aside), and every
    static file (scripts, styles, icons) those pages load: the status of each."""
    seen: dict[str, int] = {}
    pending = deque(["/admin/"])
    while pending and len(seen) < 400:
        url = pending.popleft()
        response = client.get(url)
        seen[url] = response.status_code
        if "text/html" not in response.headers.get("content-type", ""):
            continue
        for href in re.findall(r'(?:href|src)="([^"#?]+)', response.text):
            target = urlsplit(urljoin(url, href)).path
            new = target not in seen and target not in pending
            wanted = target.startswith(("/admin/", "/static/")) and not ACTING_LINKS.search(target)
            if new and wanted:
                pending.append(target)
    return seen


def test_installed_demo_from_another_folder_serves_a_generation_the_docs_and_every_admin_page(demo, site):
    running, base = demo
    started = running.wait_for("Press Ctrl-C", timeout=120)
    key = (site / ".foxgate" / "demo-key").read_text().strip()
    assert key.startswith("sk-")
    assert started.count(key) >= 3  # before the processes start, in the banner, and in its curl line
    password = re.search(r"user admin, password (\S+)\)", started)
    assert password, started

    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as api:
        submitted = api.post("/v1/llm/generations", json={"model": "demo-model", "prompt": "Hello wheel"})
        assert submitted.status_code == 200, submitted.text
        task = poll_until_finished(api, submitted.json()["id"], timeout=60)
    assert task["status"] == "completed", task
    assert task["results"][0]["choices"][0]["message"]["content"] == "Echo: Hello wheel"

    docs = httpx.get(f"{base}/v1/docs")
    assert docs.status_code == 200
    assert not re.search(r'(?:src|href)="(?:https?:)?//', docs.text), docs.text
    for script in re.findall(r'<script src="([^"]+)"', docs.text):
        assert httpx.get(f"{base}{script}").status_code == 200, script

    with httpx.Client(base_url=base, timeout=30) as admin:
        admin_login(admin, password[1])
        pages = crawl_admin(admin)
        task_pages = [url for url in pages if re.fullmatch(r"/admin/tasks/task/[^/]+/change/", url)]
        key_pk = re.search(r"/admin/tenants/apikey/(\d+)/change/", " ".join(pages))
        assert key_pk, sorted(pages)
        # The page that shows a new secret is the answer to the POST that made it (here: rotation).
        rotate_url = f"/admin/tenants/apikey/{key_pk[1]}/rotate/"
        confirm = admin.get(rotate_url)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', confirm.text)
        assert confirm.status_code == 200 and token, confirm.text
        rotated = admin.post(
            rotate_url,
            data={"csrfmiddlewaretoken": token[1]},
            headers={"Referer": f"{base}{rotate_url}"},
        )
        pages["secret page"] = rotated.status_code
        assert re.search(r"sk-[a-z0-9]{12}[A-Za-z0-9_-]{20,}", rotated.text), rotated.text
    failing = {url: status for url, status in pages.items() if status != 200}
    assert failing == {}, failing
    for page in ("/admin/tasks/task/usage/", "/admin/tasks/task/failures/", "/admin/tenants/tenant/"):
        assert page in pages, sorted(pages)
    # the theme's styles and the admin's scripts come from the installed packages, through WhiteNoise
    assert any(url.startswith("/static/unfold/") for url in pages), sorted(pages)
    assert any(url.startswith("/static/admin/js/") for url in pages), sorted(pages)
    assert task_pages, sorted(pages)
