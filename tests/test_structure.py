"""Imports point down: no cycle among studio modules and no module importing from a layer above its own.

Every `import` and `from ... import` of a studio module counts, wherever it is written: at the top, inside a
function (where imports used to hide cycles) or under `if TYPE_CHECKING:`. Dotted strings Django resolves at run
time ("studio.views.errors.page_not_found" in urls.py, middleware names in settings.py) are not imports and do not
count. Each test lists every violation of its kind at once, with the file and line of each import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

STUDIO = Path(__file__).resolve().parent.parent / "studio"

# The layers, lowest first. A module may import only from its own layer or a lower one. "studio.x.*" stands for
# studio.x itself and every module inside it; the most specific entry decides. A module under studio/ (migrations
# aside) that no entry names fails test_every_module_is_in_the_layer_map: classify new modules here.
LAYERS: list[tuple[str, list[str]]] = [
    (
        "foundations: pure rules, settings, the gateway client and the emulator; no studio records",
        [
            "studio",  # the package itself: a docstring at most
            "studio.catalog",
            "studio.pricing",
            "studio.cadence",
            "studio.formatting",
            "studio.params",
            "studio.text",
            "studio.bootstrap",
            "studio.gateway.*",
            "studio.emulator.*",
            "studio.media",
            "studio.storage",  # where render files live: the local disk or an object store (no records)
            "studio.logging",
            "studio.settings",
            "studio.metrics",  # counters the gateway client, the poller and the download bump
            "studio.netaddr",  # whom to believe about the client's address (REMOTE_ADDR or the proxy's header)
        ],
    ),
    ("records: the models and their querysets", ["studio.models"]),
    ("the queue and access decisions", ["studio.queue", "studio.access"]),
    (
        "the lifecycle, money and the web's building blocks",
        [
            "studio.lifecycle.*",
            "studio.money.*",
            "studio.gallery",
            "studio.ranged",
            "studio.cursor",  # which cards a page lacks: the poll and submit answers share it
            "studio.live",  # what a page's poller notifies, and how the review queue changed
            "studio.serializers",
            "studio.health",  # /healthz's checks and what /metrics reads from the database
            "studio.throttle",  # login failures counted in the shared cache
        ],
    ),
    ("actions and task entry points", ["studio.actions.*", "studio.tasks"]),
    (
        "the web, the command line and the app's wiring",
        [
            "studio.views.*",
            "studio.forms",  # bound by views and commands; they hand actions cleaned data, never a form
            "studio.htmx",
            "studio.middleware",
            "studio.context_processors",
            "studio.templatetags.*",
            "studio.admin",
            "studio.urls",
            "studio.management.*",
            "studio.bench",
            "studio.chaos",
            "studio.apps",
            "studio.checks",
            "studio.wsgi",
        ],
    ),
]
# Pairs that never import each other, in either direction: the client knows the emulator only over HTTP.
APART = [("studio.gateway.*", "studio.emulator.*")]


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.importer} -> {self.target}  ({self.path.relative_to(STUDIO.parent)}:{self.line})"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(STUDIO.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def studio_modules() -> dict[str, Path]:
    """Every module under studio/ but the migrations, by dotted name."""
    return {
        module_name(path): path
        for path in sorted(STUDIO.rglob("*.py"))
        if "migrations" not in path.relative_to(STUDIO).parts
    }


def imports_in(name: str, path: Path, source: str, known: set[str]) -> list[Import]:
    """The studio modules `source` (module `name` at `path`) imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            # `from studio import lifecycle` imports the module studio.lifecycle; `from studio.models import
            # Render` imports studio.models.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        for target in targets:
            if target == "studio" or target.startswith("studio."):
                found.append(Import(name, target, path, node.lineno))
    return found


def all_imports() -> list[Import]:
    modules = studio_modules()
    known = set(modules)
    found: list[Import] = []
    for name, path in modules.items():
        found.extend(imports_in(name, path, path.read_text(), known))
    return sorted(set(found), key=lambda i: (i.importer, i.line, i.target))


def matches(pattern: str, name: str) -> bool:
    if pattern.endswith(".*"):
        return name == pattern[:-2] or name.startswith(pattern[:-1])
    return name == pattern


def layer_of(name: str) -> int | None:
    """The layer of the most specific entry naming `name`, or None if no entry does."""
    best: tuple[int, int] | None = None  # (specificity, layer)
    for layer, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if matches(pattern, name):
                specificity = len(pattern.removesuffix(".*"))
                if best is None or specificity > best[0]:
                    best = (specificity, layer)
    return None if best is None else best[1]


def fail_listing(title: str, problems: list[str]) -> None:
    """Fail with every problem of one kind, one a line."""
    if problems:
        pytest.fail(f"{len(problems)} {title}:\n  " + "\n  ".join(problems), pytrace=False)


# --- the tests ------------------------------------------------------------------------------------------------


def test_every_module_is_in_the_layer_map():
    imports = all_imports()
    names = set(studio_modules()) | {i.target for i in imports}
    fail_listing(
        "modules missing from LAYERS (classify them)", sorted(n for n in names if layer_of(n) is None)
    )


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for i in all_imports():
        low, high = layer_of(i.importer), layer_of(i.target)
        if low is not None and high is not None and high > low:
            upward.append(f"{i}  layer {low} -> {high}")
    fail_listing("imports point up", upward)


def test_the_gateway_client_and_the_emulator_never_import_each_other():
    crossing = [
        str(i)
        for i in all_imports()
        for one, other in APART
        if (matches(one, i.importer) and matches(other, i.target))
        or (matches(other, i.importer) and matches(one, i.target))
    ]
    fail_listing("imports between the gateway client and the emulator", crossing)


def test_no_import_cycle_among_studio_modules():
    imports = [i for i in all_imports() if i.importer != i.target]
    cycles = [describe_cycle(group, imports) for group in cyclic_groups(imports)]
    fail_listing("import cycles (each: one chain, then every import inside the cycle)", cycles)


# --- cycles ---------------------------------------------------------------------------------------------------


def cyclic_groups(imports: list[Import]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm), each sorted."""
    graph: dict[str, set[str]] = {}
    for i in imports:
        graph.setdefault(i.importer, set()).add(i.target)
        graph.setdefault(i.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def describe_cycle(group: list[str], imports: list[Import]) -> str:
    """One shortest chain from the group's first module back to itself, then every import inside the group."""
    inside = [i for i in imports if i.importer in group and i.target in group]
    start = group[0]
    paths: dict[str, list[str]] = {start: [start]}
    queue = [start]
    chain: list[str] = []
    while queue and not chain:
        node = queue.pop(0)
        for i in inside:
            if i.importer != node:
                continue
            if i.target == start:
                chain = [*paths[node], start]
                break
            if i.target not in paths:
                paths[i.target] = [*paths[node], i.target]
                queue.append(i.target)
    lines = "\n      ".join(str(i) for i in inside)
    return f"{' -> '.join(chain)}\n      {lines}"


# --- the collector itself -------------------------------------------------------------------------------------


def test_the_collector_sees_imports_inside_functions_relative_ones_and_names_from_modules():
    source = (
        "from studio import catalog, settings as conf\n"
        "from studio.models import Render\n"
        "import studio.gateway.client\n"
        "from . import video\n"
        "from ..types import Problem\n"
        "def later():\n"
        "    from studio.views.public import init_image_path\n"
        "if False:\n"
        "    import json, studio.tasks\n"
    )
    known = {"studio.catalog", "studio.settings", "studio.models", "studio.x.y.video", "studio.x.types"}
    path = STUDIO / "x" / "y" / "server.py"
    assert [i.target for i in imports_in("studio.x.y.server", path, source, known)] == [
        "studio.catalog",
        "studio.settings",
        "studio.models",
        "studio.gateway.client",
        "studio.x.y.video",
        "studio.x.types",
        "studio.views.public",
        "studio.tasks",
    ]


def test_the_most_specific_map_entry_decides():
    assert layer_of("studio.views") == layer_of("studio.views.public") == len(LAYERS) - 1
    assert layer_of("studio.money.ledger") == 3
    assert layer_of("studio.moneybox") is None
