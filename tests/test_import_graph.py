"""The package's module import graph has no cycles (top-level imports; imports inside functions are deliberate lazy
ones), and the layers keep their direction: `ops`, `methods` and `core` never import the transformers backend or an
integration at module level."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lmms_holitom"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.parse(path.read_text()).body:  # module level only
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("lmms_holitom"):
                    graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles() -> None:
    graph = _graph()
    package_edges = {n: {t for t in ts if not n.startswith(t + ".")} for n, ts in graph.items()}  # a package's
    # own __init__ runs first anyway: an edge from a submodule to its parent package is not a cycle of ours
    assert _cycle(package_edges) is None, " -> ".join(_cycle(package_edges) or [])


def test_layers_keep_their_direction() -> None:
    graph = _graph()
    low = ("lmms_holitom.ops", "lmms_holitom.methods", "lmms_holitom.core")
    high = ("lmms_holitom.hf", "lmms_holitom.hf.models", "lmms_holitom.integrations")
    bad = sorted(f"{n} -> {t}" for n, ts in graph.items() if n.startswith(low) for t in ts if t.startswith(high))
    assert bad == []


def test_the_vllm_plugin_needs_only_the_core() -> None:
    """Everything `lmms_holitom.integrations.vllm` imports at module level, transitively, is the framework-free core:
    never the transformers backend (a vLLM environment pins its own, older transformers) nor the lmms-eval models."""
    graph = _graph()
    seen: set[str] = set()
    todo = [n for n in graph if n.startswith("lmms_holitom.integrations.vllm")]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    banned = ("lmms_holitom.hf", "lmms_holitom.integrations.lmms_eval", "lmms_holitom.testing")
    assert sorted(n for n in seen if n.startswith(banned)) == []
    assert "lmms_holitom.integrations.vllm.plugin" in seen
