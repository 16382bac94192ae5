"""The package's layers: imports point down only, never in a circle, never at another module's private names.

Read from the source with ``ast`` (every import, at module level or inside a function),
so a cycle held together by a function-level import fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "edge_infer"

# Lower number = lower layer. A module may import modules of a lower layer, and
# modules of its own subpackage (the cycle test keeps those honest).
LAYERS = {
    "edge_infer.errors": 0,
    "edge_infer.results": 0,
    "edge_infer.runtime": 1,
    "edge_infer.image": 1,
    "edge_infer.codec": 2,
    "edge_infer.detect": 2,
    "edge_infer.recognizer": 3,
    "edge_infer": 4,  # the package's own __init__ (public names)
    "edge_infer.apps": 5,
    "edge_infer.__main__": 6,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every edge_infer import in the file."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("edge_infer")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("edge_infer"):
                continue
            names = [a.name for a in node.names]
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            out += [(s, [], node.lineno) for s in subs]
            out.append((target, [n for n in names if f"{target}.{n}" not in known], node.lineno))
    return out


def _layer(module: str) -> tuple[str, int]:
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return best, LAYERS[best]


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {m: {t for t, _, _ in _imports(m, p, known) if t != m} for m, p in mods.items()}


def test_every_module_has_a_layer():
    for m in _modules():
        assert _layer(m)[0], m


def test_imports_point_down_only():
    mods = _modules()
    known = set(mods)
    upward = []
    for m, p in mods.items():
        home, level = _layer(m)
        for target, _, line in _imports(m, p, known):
            t_home, t_level = _layer(target)
            same_package = t_home == home and home != "edge_infer"
            if not same_package and t_level >= level:
                upward.append(f"{p.relative_to(PKG.parent)}:{line} imports {target}")
    assert not upward, "imports that point up or sideways:\n" + "\n".join(upward)


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t) :] + [t])
            elif t in graph and t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_module_imports_another_modules_private_names():
    mods = _modules()
    known = set(mods)
    private = [
        f"{p.relative_to(PKG.parent)}:{line} takes {n} from {target}"
        for m, p in mods.items()
        for target, names, line in _imports(m, p, known)
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert not private, "\n".join(private)


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path):
    # the rules above must be able to fail: a toy package with both faults
    pkg = tmp_path / "edge_infer"
    (pkg / "detect").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "detect" / "__init__.py").write_text("")
    (pkg / "detect" / "a.py").write_text("from .b import x\nfrom ..recognizer import R\n")
    (pkg / "detect" / "b.py").write_text("from .a import _y\n")
    (pkg / "recognizer.py").write_text("")
    globals()["PKG"] = pkg
    try:
        graph = _graph()
        assert (
            "edge_infer.detect.b" in graph["edge_infer.detect.a"]
            and "edge_infer.detect.a" in graph["edge_infer.detect.b"]
        )
        mods = _modules()
        ups = [
            t
            for t, _, _ in _imports("edge_infer.detect.a", mods["edge_infer.detect.a"], set(mods))
            if _layer(t)[1] >= 2
        ]
        assert "edge_infer.recognizer" in ups
        names = _imports("edge_infer.detect.b", mods["edge_infer.detect.b"], set(mods))
        assert any("_y" in n for _, n, _ in names)
    finally:
        globals()["PKG"] = Path(__file__).resolve().parent.parent / "edge_infer"


def test_every_error_the_package_defines_is_an_edge_infer_error():
    import edge_infer.errors as errors

    defined = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert len(defined) >= 8 and all(issubclass(e, errors.EdgeInferError) for e in defined)
    # and no other module defines an exception class of its own
    others = [
        f"{p.relative_to(PKG.parent)}: class {n.name}"
        for p in PKG.rglob("*.py")
        if p.name != "errors.py"
        for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(n, ast.ClassDef) and any(getattr(b, "id", "").endswith(("Error", "Exception")) for b in n.bases)
    ]
    assert not others, others
