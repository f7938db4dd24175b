"""The house rules that keep the package readable: no import cycles, no upward arrow between folders,
and Docker reached from one module."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pgha_lab"
GATEWAY = "pgha_lab.gateway"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported(path: Path, known: set[str]) -> set[str]:
    """The package modules a file imports, at any depth (a late import inside a function counts too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pgha_lab.x import y`: y may be a module of its own or a name in x.
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    graph = {}
    for name, path in mods.items():
        # A package's own __init__ is imported by every submodule; an edge to it is not a dependency.
        graph[name] = {m for m in imported(path, known) if m != name and not name.startswith(m + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that starts and ends on the same module, or None."""
    state: dict[str, int] = {}   # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle_and_passes_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "pgha_lab.chaos.expectations" in graph["pgha_lab.chaos.actions"]   # the walk sees real edges
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# The folders of the package from the bottom up: a module imports from its own folder or from a
# folder on a lower line, never from one on its own line or above. Top-level modules are placed by
# what they import: the graph of folders and top-level modules has no cycle (below), so a folder
# cannot reach up through one (drill/matrix.py importing lifecycle.py, which rolls with rolling/,
# which measures with drill/).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("term", "check", "render"),
    ("imaging",),
    ("bare",),
    ("chaos",),
    ("drill",),
    ("rolling",),
    ("lessons",),
    ("deploy",),            # below track/: `track solve --apply` runs the playbook's steps
    ("track", "web"),
    ("commands",),
)


def folder_of(module: str, folders: set[str]) -> str | None:
    """The folder (subpackage) a module lives in, None for a top-level module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in folders else None


def package_folders() -> set[str]:
    return {p.parent.name for p in PACKAGE.glob("*/__init__.py")}


def upward_arrows(graph: dict[str, set[str]], layers: tuple[tuple[str, ...], ...], folders: set[str]) -> list[str]:
    """Imports from a folder into a folder on its own line or a higher one."""
    rank = {name: i for i, line in enumerate(layers) for name in line}
    out = []
    for a, targets in sorted(graph.items()):
        fa = folder_of(a, folders)
        for b in sorted(targets):
            fb = folder_of(b, folders)
            if fa and fb and fa != fb and rank[fb] >= rank[fa]:
                out.append(f"{a} -> {b} ({fa}/ is not above {fb}/)")
    return out


def unit_graph(graph: dict[str, set[str]], folders: set[str]) -> dict[str, set[str]]:
    """The import graph with each folder as one node (its modules' imports merged)."""
    def unit(m: str) -> str:
        f = folder_of(m, folders)
        return f + "/" if f else m
    out: dict[str, set[str]] = {}
    for a, targets in graph.items():
        out.setdefault(unit(a), set()).update(unit(b) for b in targets if unit(b) != unit(a))
    return out


def test_the_layer_check_finds_an_upward_arrow_and_a_cycle_through_a_top_level_module():
    folders = {"low", "high"}
    layers = (("low",), ("high",))
    assert upward_arrows({"p.high.a": {"p.low.b"}}, layers, folders) == []
    assert upward_arrows({"p.low.b": {"p.high.a"}}, layers, folders) == ["p.low.b -> p.high.a (low/ is not above high/)"]
    # low/ imports a top-level module that imports high/: no arrow between folders, but a cycle of units.
    graph = {"p.high.a": {"p.low.b"}, "p.low.b": {"p.top"}, "p.top": {"p.high.a"}}
    assert find_cycle(unit_graph(graph, folders)) is not None


def test_every_folder_has_its_line_in_the_layers():
    placed = [name for line in LAYERS for name in line]
    assert sorted(placed) == sorted(package_folders()), "add the new folder to LAYERS, above what it imports"


def test_no_folder_imports_a_folder_on_its_own_line_or_above():
    graph = import_graph()
    assert "pgha_lab.chaos.actions" in graph["pgha_lab.drill.scenarios"]   # the walk sees real edges
    arrows = upward_arrows(graph, LAYERS, package_folders())
    assert arrows == [], "upward arrows:\n" + "\n".join(arrows)


def test_folders_and_top_level_modules_import_without_a_cycle():
    cycle = find_cycle(unit_graph(import_graph(), package_folders()))
    assert cycle is None, "a cycle through folders: " + " -> ".join(cycle)


def docker_uses(path: Path) -> list[str]:
    """Where a file imports the docker SDK or runs the docker command."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "docker" for a in node.names):
            found.append(f"line {node.lineno}: import docker")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "docker":
            found.append(f"line {node.lineno}: from {node.module} import")
        elif isinstance(node, (ast.List, ast.Tuple)) and node.elts:
            first = node.elts[0]
            if isinstance(first, ast.Constant) and first.value == "docker":
                found.append(f"line {node.lineno}: runs the docker command")
    return found


def test_the_docker_scan_sees_an_sdk_import_and_a_cli_call(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import docker.errors\nimport subprocess\nsubprocess.run(['docker', 'ps'])\n")
    assert len(docker_uses(f)) == 2


@pytest.mark.parametrize("name", sorted(n for n in modules() if n != GATEWAY))
def test_only_the_gateway_reaches_docker(name):
    assert docker_uses(modules()[name]) == []


def test_the_gateway_does_reach_docker():
    assert docker_uses(modules()[GATEWAY])
