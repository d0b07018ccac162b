"""The import graph of evalkit: no module imports itself back through others.

The graph is the one import-linter checks (grimp), and it holds every import statement of a
module, those inside functions included: a deferred import hides a circle from Python's import
machinery but not from a reader, and it is still a circle.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: the folders at the repository root that install under evalkit (pyproject's package-dir)
INSTALLED_AS = {"evalkit": "evalkit", "runtimes": "evalkit/runtimes", "preprocess": "evalkit/preprocess",
                "conf": "evalkit/conf"}

DUMP = """
import json, grimp
graph = grimp.build_graph("evalkit", cache_dir=None)
print(json.dumps({m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}))
"""


@pytest.fixture(scope="module")
def import_graph(tmp_path_factory) -> dict[str, set[str]]:
    """Every evalkit.* module -> the evalkit.* modules it imports, from a copy laid out as installed.

    grimp reads the source folder of the import name, and runtimes/, preprocess/ and conf/ sit beside
    evalkit/ in the checkout (as ``make lint-imports`` does). A fresh interpreter, so the copy is what it finds.
    """
    staged = tmp_path_factory.mktemp("imports")
    for folder, target in INSTALLED_AS.items():
        shutil.copytree(ROOT / folder, staged / target, ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-c", DUMP], cwd=staged, env={"PYTHONPATH": str(staged), "PATH": ""},
                         capture_output=True, text=True, check=True).stdout
    return {m: set(v) for m, v in json.loads(out).items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path a -> b -> ... -> a, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in sorted(edges):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(edges[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(edges.get(nxt, ()))))
    return None


def test_find_cycle_reports_the_path() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_graph_holds_plug_ins_and_function_level_imports(import_graph) -> None:
    assert "evalkit.runtimes.ort" in import_graph and "evalkit.preprocess.timm" in import_graph
    # evalkit.gate imports evalkit.commands inside main() only
    assert "evalkit.commands" in import_graph["evalkit.gate"]


def test_no_import_cycle_among_evalkit_modules(import_graph) -> None:
    cycle = find_cycle(import_graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
