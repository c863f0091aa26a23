"""Arrows point one way (STYLE.md 14): the web side never imports the relay, adapters never see tenants,
and production never imports tests.

Two checks, because each misses what the other sees: an AST scan of every import statement in the tree
(top-level and inside functions, followed transitively through our own modules), and a fresh web process
that boots as uvicorn would and resolves every URL, which also catches imports by dotted-path string
(settings, admin autodiscovery, app configs) that no import statement names.
"""

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = ("foxgate", "tasks", "tenants")
RELAY = "tasks.relay"
PROVIDERS = "tasks.relay.providers"
# The worker cluster's side, which may import the relay: its job entry points and the relay itself.
CLUSTER_SIDE = ("tasks.jobs", RELAY)


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_of(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    return {
        module_name(path, root): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
        if "migrations" not in path.parts
    }


def is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def executed_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but the bodies of `if TYPE_CHECKING:`, which name types and never run."""
    found, pending = [], [tree]
    while pending:
        node = pending.pop()
        found.append(node)
        children = node.orelse if is_type_checking(node) else list(ast.iter_child_nodes(node))
        pending.extend(children)
    return found


def imported_by(path: Path, name: str) -> set[str]:
    """Every module an import statement anywhere in the file runs (in functions too), with the packages
    importing it executes (`import a.b.c` runs a and a.b); `from a import b` counts a.b, in case b is a
    module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in executed_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            found.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return found


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Our modules → the modules they import (our own and others')."""
    return {name: imported_by(path, name) for name, path in modules_of(root, packages).items()}


def reach(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module `start` imports, directly or through our own modules: module → who imported it."""
    seen: dict[str, str] = {}
    pending = [start]
    while pending:
        current = pending.pop()
        for target in graph.get(current, ()):
            if target not in seen and target != start:
                seen[target] = current
                pending.append(target)
    return seen


def chain(seen: dict[str, str], start: str, end: str) -> str:
    path = [end]
    while path[-1] != start:
        path.append(seen[path[-1]])
    return " -> ".join(reversed(path))


def web_side(graph: dict[str, set[str]]) -> list[str]:
    return [name for name in graph if not any(within(name, side) for side in CLUSTER_SIDE)]


def violations(graph: dict[str, set[str]], sources: list[str], forbidden: str) -> list[str]:
    found = []
    for source in sources:
        seen = reach(graph, source)
        found += [chain(seen, source, hit) for hit in seen if within(hit, forbidden)][:1]
    return found


GRAPH = import_graph(ROOT, PRODUCTION)


def test_the_scan_sees_the_whole_tree():
    assert {"tasks.views", "tasks.admin", "foxgate.urls", "foxgate.asgi", "tenants.admin"} <= set(GRAPH)
    # And it sees the real arrows: the cluster's entry points do reach the relay.
    assert violations(GRAPH, ["tasks.jobs"], RELAY)


def test_no_web_side_module_imports_the_relay():
    assert violations(GRAPH, web_side(GRAPH), RELAY) == []


def test_provider_adapters_never_import_tenants():
    adapters = [name for name in GRAPH if within(name, PROVIDERS)]
    assert adapters
    assert violations(GRAPH, adapters, "tenants") == []


def test_no_production_module_imports_tests():
    assert violations(GRAPH, list(GRAPH), "tests") == []


def test_the_scan_catches_an_import_hidden_in_a_function(tmp_path):
    """The checks above can fail: a toy tree whose view imports the relay two hops away, inside a
    function, and whose adapter imports tenants and a test helper."""
    files = {
        "tasks/__init__.py": "",
        "tasks/views.py": "def view():\n    from tasks import helpers\n",
        "tasks/helpers.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from tasks.relay.engine import Engine\n"
            "def helper():\n    from .relay.engine import run\n"
        ),
        "tasks/serializers.py": "import typing\nif typing.TYPE_CHECKING:\n    import tasks.relay\n",
        "tasks/relay/__init__.py": "",
        "tasks/relay/engine.py": "run = None\n",
        "tasks/relay/providers/__init__.py": "",
        "tasks/relay/providers/base.py": "import tenants.models\nfrom tests.helpers import x\n",
        "tenants/__init__.py": "",
        "tenants/models.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path, ("tasks", "tenants"))

    [found] = violations(graph, ["tasks.views"], RELAY)
    assert found.startswith("tasks.views -> tasks.helpers -> tasks.relay")
    assert violations(graph, ["tasks.serializers"], RELAY) == [], "a type-only import never runs"
    assert violations(graph, ["tasks.relay.providers.base"], "tenants")
    assert violations(graph, list(graph), "tests")


WEB_BOOT = textwrap.dedent(
    """
    import json, sys
    from foxgate.asgi import application
    from django.urls import get_resolver
    import foxgate.urls
    get_resolver().url_patterns  # resolve every include(), as the first request would
    for name in sys.argv[1:]:
        __import__(name)
    print(json.dumps(sorted(m for m in sys.modules if m == "tasks.relay" or m.startswith("tasks.relay."))))
    """
)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param([], id="asgi-and-urls"),
        pytest.param(
            [
                "tasks.views",
                "tasks.admin",
                "tasks.selectors",
                "tasks.services",
                "tasks.streaming",
                "tasks.serializers",
            ],
            id="named-web-modules",
        ),
    ],
)
def test_a_fresh_web_process_never_loads_the_relay(extra):
    booted = subprocess.run(
        [sys.executable, "-c", WEB_BOOT, *extra], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert booted.returncode == 0, booted.stderr
    assert json.loads(booted.stdout.splitlines()[-1]) == []
