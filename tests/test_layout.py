"""The package's shape, read from its source: the core imports no adapter and neither transformers nor accelerate (even
inside a function), modules import each other by public names only, and no import circle forms (imports inside
functions count; `if TYPE_CHECKING:` blocks do not, as they never run)."""

import ast
import subprocess
import sys
from pathlib import Path

import hf_lrfind

ROOT = Path(hf_lrfind.__file__).parent
ADAPTER_LIBRARIES = {"transformers", "accelerate", "datasets", "peft", "trl", "tokenizers"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str) -> list[tuple[str, list[str]]]:
    """(module, imported names) for every import of module `name` that can run, with relative imports resolved."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, []) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - child.level + 1] + ([base] if base else []))
                names = [alias.name for alias in child.names]
                if child.module is None:  # `from . import x`: x may be a module
                    found.extend((f"{base}.{n}" if f"{base}.{n}" in MODULES else base, [n]) for n in names)
                else:
                    found.append((base, names))
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _internal(module: str) -> str | None:
    """The hf_lrfind module an import names (the longest known prefix), or None for another library."""
    while module:
        if module in MODULES:
            return module
        module = module.rpartition(".")[0]
    return None


def test_the_layout_has_a_core_and_adapters():
    assert {m for m in MODULES if m.count(".") == 1} >= {"hf_lrfind.core", "hf_lrfind.integrations", "hf_lrfind.groups"}
    assert sum(m.startswith("hf_lrfind.core.") for m in MODULES) >= 8


def test_the_core_imports_only_the_core_and_no_adapter_library():
    core = [m for m in MODULES if m.startswith("hf_lrfind.core")]
    for name in core:
        for module, _ in _imports(name):
            top = module.split(".")[0]
            assert top not in ADAPTER_LIBRARIES, f"{name} imports {module}"
            inner = _internal(module)
            assert inner is None or inner.startswith("hf_lrfind.core") or inner == "hf_lrfind._version", (
                f"{name} imports {module}, outside the core"
            )


def test_importing_the_package_and_every_core_module_loads_no_adapter_library():
    core = " ".join(f"import {m};" for m in MODULES if m.startswith("hf_lrfind.core"))
    code = (
        f"import sys, hf_lrfind; {core}"
        "bad = [m for m in ('transformers', 'accelerate', 'matplotlib', 'datasets') if m in sys.modules];"
        "sys.exit(f'loaded: {bad}' if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_modules_import_each_other_by_public_names_only():
    for name in MODULES:
        for module, names in _imports(name):
            if _internal(module) is not None:
                private = [n for n in names if n.startswith("_") and n != "__version__"]
                assert not private, f"{name} imports private names {private} from {module}"


def test_no_import_circle():
    graph = {}
    for name in MODULES:
        edges = {_internal(module) for module, _ in _imports(name)} - {None, name}
        assert name == "hf_lrfind" or "hf_lrfind" not in edges, f"{name} imports the package root"
        graph[name] = edges
    # Imports inside functions count: the result's plot is imported in its method.
    assert "hf_lrfind.core.plot" in graph["hf_lrfind.core.result"]
    done, path = set(), []

    def walk(node: str) -> None:
        if node in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(node) :] + [node]))
        if node in done:
            return
        path.append(node)
        for nxt in sorted(graph[node]):
            walk(nxt)
        path.pop()
        done.add(node)

    for name in sorted(graph):
        walk(name)
