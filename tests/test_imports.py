"""The package's modules and packages import each other one way: no import cycles, between modules or between the
package's parts (``zsiqa.engine``, ``zsiqa.config``, ``zsiqa.metric`` ...), also none hidden in function-level
imports."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "zsiqa"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """zsiqa modules that ``path`` imports anywhere in its body (except under ``if TYPE_CHECKING:``)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for a in node.names:  # ``from pkg import submodule`` needs the submodule, ``from pkg import name`` pkg
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    paths = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, name, set(paths)) for name, path in paths.items()}


def _part(module: str) -> str:
    """``zsiqa.engine.training`` -> ``zsiqa.engine``: the package part a module belongs to."""
    return ".".join(module.split(".")[:2])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_no_import_cycles_between_modules():
    assert _cycles(_graph()) == []


def test_no_import_cycles_between_package_parts():
    parts: dict[str, set[str]] = {}
    for module, deps in _graph().items():
        parts.setdefault(_part(module), set()).update(_part(d) for d in deps if _part(d) != _part(module))
    assert _cycles(parts) == []


# The Layout of docs/contributing.md, in order: each part may import the parts of its own line and of the lines above, never below.
LAYERS = [
    "errors files registry choices", "images windows", "backbones", "distances", "presets transforms", "metric",
    "baselines pyiqa_baselines", "learned_weights", "losses", "factory", "data", "stats", "zsiqa", "config", "reporting", "engine",
    "entry_point cli",
]


def test_parts_import_only_the_layers_above_them():
    layer = {("zsiqa" if name == "zsiqa" else f"zsiqa.{name}"): i for i, line in enumerate(LAYERS) for name in line.split()}
    parts: dict[str, set[str]] = {}
    for module, deps in _graph().items():
        parts.setdefault(_part(module), set()).update(_part(d) for d in deps)
    assert set(parts) == set(layer), "a new part of the package: place it in LAYERS and the Layout in docs/contributing.md"
    upward = sorted(f"{a} -> {b}" for a, deps in parts.items() for b in deps if layer[b] > layer[a])
    assert upward == []


def test_a_cycle_is_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
