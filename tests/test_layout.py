"""The shape of the code: a curated public API, no import cycles, MLflow behind the registry alone,
no private name imported across modules, the runtime free of loopml (`loopml --help` stays light: test_cli)."""

from __future__ import annotations

import ast

import loopml
from tests.conftest import REPO

SRC = REPO / "src"
PUBLIC = ["Config", "ConfigError", "DataError", "EvaluateResult", "GateFailed", "LoopmlError", "ModelError",
          "ModelInputError", "ModelRef", "ModelVersion", "NotFound", "OptimizeResult", "PipelineError", "Predictor",
          "Project", "RegisterResult", "RegistryError", "RegistryUnavailable", "ServeSettings", "TrainResult",
          "ValidateResult", "compare", "create_app", "drift", "evaluate", "init", "load_config", "optimize",
          "predict_file", "register", "run", "train", "validate"]  # fmt: skip


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text())
    return found


def imports(tree: ast.Module, module: str) -> list[tuple[str, list[str]]]:
    """(imported module, names) for every import, at any depth (lazy imports count)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [alias.name for alias in node.names]))
    return out


def test_the_public_api_is_pinned():
    assert loopml.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(loopml, name) is not None
    assert (SRC / "loopml" / "py.typed").is_file() and (SRC / "loopml_runtime" / "py.typed").is_file()


def test_no_import_cycles_at_module_level():
    found = modules()
    graph = {}
    for name, tree in found.items():
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        deps = set()
        for node in top:
            targets = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for target in targets:
                deps |= {m for m in found if target == m or (target.startswith(m + ".") and m in found)}
        graph[name] = {d for d in deps if d != name and not name.startswith(d + ".")}
    seen, stack = set(), []

    def visit(node: str) -> None:
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(node) :], node]))
        if node in seen:
            return
        stack.append(node)
        for dep in graph.get(node, ()):
            visit(dep)
        stack.pop()
        seen.add(node)

    for node in graph:
        visit(node)


def test_mlflow_is_imported_by_the_registry_facade_and_the_pyfunc_alone():
    allowed = {"loopml.registry", "loopml_runtime.pyfunc"}
    users = {name for name, tree in modules().items()
             if any(m == "mlflow" or m.startswith("mlflow.") for m, _ in imports(tree, name))}  # fmt: skip
    assert users <= allowed, users - allowed


def test_no_private_name_is_imported_across_modules():
    def private(n: str) -> bool:
        return n.startswith("_") and not n.startswith("__")

    offenders = [(name, module, n) for name, tree in modules().items() for module, names in imports(tree, name)
                 for n in names if private(n) and module.startswith("loopml")]  # fmt: skip
    assert offenders == []


def test_the_runtime_imports_nothing_of_loopml():
    for name, tree in modules().items():
        if name.startswith("loopml_runtime"):
            assert not [m for m, _ in imports(tree, name) if m == "loopml" or m.startswith("loopml.")], name


def test_modules_state_their_role():
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path.relative_to(REPO)} has no docstring"
