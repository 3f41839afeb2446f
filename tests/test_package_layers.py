"""The layers of the house that import-linter cannot see: which modules import the compiled ones.

The compiled ``fastconv._*`` modules have no Python source, so import-linter (pyproject.toml's contracts,
run by CI) does not know them; this test reads every module of the package and checks that only
``fastconv.ops`` and ``fastconv.runtime`` import them.
"""
import ast
import os

import fastconv

PACKAGE = os.path.dirname(fastconv.__file__)
ALLOWED = {"ops.py", "runtime.py"}


def _compiled_imports(path, package):
    """The compiled modules ``path`` (a module of ``package``, a list of names) imports."""
    found = []
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [n for n in names if n.startswith("fastconv._") and not n.startswith("fastconv.__")]
    return found


def test_only_ops_and_runtime_import_the_compiled_modules():
    offenders = {}
    for root, _, files in os.walk(PACKAGE):
        package = ["fastconv"] + [p for p in os.path.relpath(root, PACKAGE).split(os.sep) if p != "."]
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), PACKAGE)
            if name.endswith(".py") and rel not in ALLOWED:
                imports = _compiled_imports(os.path.join(root, name), package)
                if imports:
                    offenders[rel] = imports
    assert not offenders, f"only ops.py and runtime.py may import compiled modules: {offenders}"
