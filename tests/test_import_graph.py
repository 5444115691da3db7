"""The package's import graph: no cycles, no import from a lower layer into a higher one, and
the project's own modules imported at the top of files.

The oracle is the source itself, read with ``ast``: every ``import`` statement of every module
of the installed package, at module level or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import neurocompile
import neurocompile.backends
import neurocompile.models

# Lowest first: a module may import its own layer and the layers below it (docs/architecture.md).
LAYERS = [
    ("neurocompile", "neurocompile.errors"),
    ("neurocompile.files", "neurocompile.data", "neurocompile.events", "neurocompile.machine"),
    ("neurocompile.semantics.discretization",),
    ("neurocompile.ir",),
    ("neurocompile.semantics", "neurocompile.hardware"),
    ("neurocompile.models",),
    ("neurocompile.frontend",),
    ("neurocompile.resources",),
    ("neurocompile.backends",),
    ("neurocompile.compiler",),
    ("neurocompile.analysis",),
    ("neurocompile.training", "neurocompile.learning", "neurocompile.onnx", "neurocompile.distributed"),
    ("neurocompile.api",),
    ("neurocompile.cli",),
]
# Imported inside functions on purpose: heavy libraries kept out of `import neurocompile` and
# `neurocompile --help`, Lava, which loads only after its compatibility step, and the peer libraries whose
# exporters `export(module)` calls where they are installed.
LAZY_THIRD_PARTY = (
    "torch",
    "nir",
    "nirtorch",
    "lava",
    "onnx",
    "onnxruntime",
    "matplotlib",
    "scipy",
    "sklearn",
    "tonic",
    "h5py",
    "snntorch",
    "norse",
    "spikingjelly",
    "sinabs",
    "rockpool",
)


def package_modules() -> dict[str, Path]:
    """Every module of the installed package: dotted name -> file."""
    roots = {
        "neurocompile": Path(neurocompile.__file__).parent,
        "neurocompile.backends": Path(neurocompile.backends.__file__).parent,
        "neurocompile.models": Path(neurocompile.models.__file__).parent,
    }
    found = {}
    for package, root in roots.items():
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join((package, *parts[:-1])) if parts[-1] == "__init__" else ".".join((package, *parts))
            if name.split(".")[1:2] in (["backends"], ["models"]) and package == "neurocompile":
                continue  # the subpackages installed from their own folders
            found[name] = path
    return found


def imports(name: str, path: Path, modules: dict) -> list[tuple[str, bool]]:
    """``(imported module, inside a function)`` for every import statement of module ``name``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parent = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                for alias in child.names:  # `from package import module` imports the module
                    target = f"{base}.{alias.name}"
                    found.append((target if target in modules else base, in_function))
            visit(child, nested)

    visit(ast.parse(path.read_text()), False)
    return found


def layer_of(name: str) -> int | None:
    """The layer of the longest prefix in :data:`LAYERS` that names ``name`` or a package above it."""
    matches = [
        (len(prefix), index)
        for index, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if name == prefix or name.startswith(prefix + ".")
    ]
    return max(matches)[1] if matches else None


def own_edges(modules: dict) -> dict[str, set[str]]:
    """Module-level imports between the package's own modules."""
    edges = {}
    for name, path in modules.items():
        edges[name] = {target for target, lazy in imports(name, path, modules) if not lazy and target in modules}
    return edges


def violations(modules: dict, wrong) -> list[str]:
    """``"module -> target"`` for every import statement for which ``wrong(module, target, lazy)`` holds."""
    return [
        f"{name} -> {target}"
        for name, path in modules.items()
        for target, lazy in imports(name, path, modules)
        if wrong(name, target, lazy)
    ]


def test_every_module_has_a_layer():
    assert all(layer_of(name) is not None for name in package_modules())


def test_the_import_graph_has_no_cycle():
    modules = package_modules()
    edges = own_edges(modules)
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = "done"

    for name in sorted(modules):
        if name not in state:
            visit(name, [name])
    assert not cycles


def test_no_module_imports_a_higher_layer():
    modules = package_modules()
    assert not violations(modules, lambda name, target, _lazy: target in modules and layer_of(target) > layer_of(name))


def heavy_modules(modules: dict) -> set[str]:
    """The modules whose import loads a heavy library (:data:`LAZY_THIRD_PARTY`), directly or through
    the module-level imports of the package's own modules."""
    imports_of = {name: imports(name, path, modules) for name, path in modules.items()}
    heavy = {
        name
        for name, found in imports_of.items()
        if any(not lazy and target.split(".")[0] in LAZY_THIRD_PARTY for target, lazy in found)
    }
    edges = own_edges(modules)
    while True:
        more = {name for name in modules if name not in heavy and edges[name] & heavy}
        if not more:
            return heavy
        heavy |= more


def test_own_modules_are_imported_at_the_top_unless_that_keeps_a_light_module_light():
    """A function may import one of the package's modules only when that module loads a heavy library
    and the importing module does not (``neurocompile --help`` loads no torch; Lava only after its
    compatibility step)."""
    modules = package_modules()
    heavy = heavy_modules(modules)
    assert not violations(
        modules, lambda name, target, lazy: lazy and target in modules and (target not in heavy or name in heavy)
    )


def test_only_heavy_libraries_are_imported_inside_functions():
    light = lambda target: not target.startswith("neurocompile") and target.split(".")[0] not in LAZY_THIRD_PARTY  # noqa: E731
    assert not violations(package_modules(), lambda _name, target, lazy: lazy and light(target))
