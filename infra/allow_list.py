"""What may ship to AWS: the modules an entry point imports, all of them in the domain layer.

A bundle is the import closure of its entry points (Lambda handlers, SageMaker job scripts) within the
``mlcycle`` package, found by reading ``import`` statements (function-level ones included), not by
importing anything. The closure must lie in the domain layer, the lowest layer of the import contract in
``pyproject.toml`` (``[tool.importlinter]``, contract ``layers``): the one list of the layers, which
``lint-imports`` enforces in CI. So the CLI, the embedded AWS, the demo and the example can never ship,
and a handler that reached for one would fail the synth with :class:`BundleError`.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterable
from functools import cache
from pathlib import Path

#: The package our entry points import from.
PACKAGE = "mlcycle"
#: The import-linter contract that lists the layers, lowest last.
LAYERS_CONTRACT = "layers"


class BundleError(RuntimeError):
    """An entry point imports a module that must not ship to AWS."""


@cache
def domain_modules(pyproject: Path) -> tuple[str, ...]:
    """The modules of the domain layer: the last layer of the ``layers`` import contract."""
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c.get("id") == LAYERS_CONTRACT]
    lowest = str(layers[-1]).replace("|", ":")
    return tuple(sorted(name.strip().strip("()") for name in lowest.split(":")))


def in_layer(module: str, layer: Iterable[str]) -> bool:
    return any(module == top or module.startswith(f"{top}.") for top in layer)


def import_closure(entry_points: Iterable[Path], source_root: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``mlcycle`` module the entry points import, transitively,
    with the ``__init__`` of each package on the way (Python runs those too)."""
    found: dict[str, Path] = {}
    pending: list[tuple[Path, str | None]] = [(path, None) for path in entry_points]
    while pending:
        path, module = pending.pop()
        for name in _imported(path, module):
            for prefix in _prefixes(name):
                if prefix in found:
                    continue
                file = _module_file(source_root, prefix)
                if file is None:
                    continue  # ``from package import attribute``: the attribute is no module
                found[prefix] = file
                pending.append((file, prefix))
    return found


def domain_closure(entry_points: Iterable[Path], source_root: Path, pyproject: Path) -> dict[str, Path]:
    """:func:`import_closure`, refused unless every module in it belongs to the domain layer."""
    closure = import_closure(entry_points, source_root)
    layer = domain_modules(pyproject)
    outside = sorted(name for name in closure if name != PACKAGE and not in_layer(name, layer))
    if outside:
        raise BundleError(
            f"these modules would ship to AWS but are not in the domain layer {layer}: {outside}. "
            "Entry points may import only the domain (docs/architecture.md, 'Layers')."
        )
    return closure


def _prefixes(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _module_file(root: Path, dotted: str) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported(path: Path, module: str | None) -> list[str]:
    """Dotted names of the ``mlcycle`` modules (or module attributes) ``path`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if module and path.name == "__init__.py" else (module or "").rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            names += [base] + [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    return [n for n in names if n == PACKAGE or n.startswith(f"{PACKAGE}.")]


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".") if package else []
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)
