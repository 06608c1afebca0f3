"""The package's layout stays layered: no import cycle, no private name across modules, one neural-tangents shim.

Every module of ``src/infinite_width`` is parsed with ``ast`` (nothing is
imported), counting module-level and function-level imports alike. The
scripts in ``paper_figures/`` and ``benchmarks/`` and the notebooks' code
cells must use the public API only.
"""

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "infinite_width"
PACKAGE_DIR = ROOT / "src" / PACKAGE
PRIVATE_PACKAGE = f"{PACKAGE}._src"
SHIM = f"{PACKAGE}._src.nt"


def _module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    parts = (package_dir.name,) + path.relative_to(package_dir).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(package_dir: Path = PACKAGE_DIR) -> dict:
    """``{module name: (path, ast tree)}`` of every module of the package."""
    return {
        _module_name(path, package_dir): (path, ast.parse(path.read_text(), str(path)))
        for path in sorted(package_dir.rglob("*.py"))
    }


def _is_package(name: str, modules: dict) -> bool:
    return modules[name][0].name == "__init__.py"


def _absolute(node: ast.ImportFrom, importer: str, modules: dict) -> str:
    """The module an ``ImportFrom`` reads from, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not _is_package(importer, modules):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str, tree: ast.AST, modules: dict):
    """``(line, imported module, names taken from it)`` for every import in the module, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, name, modules)
            taken = []
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:  # ``from package import module``
                    yield node.lineno, submodule, ()
                else:
                    taken.append(alias.name)
            if taken:
                yield node.lineno, source, tuple(taken)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_module(module: str) -> bool:
    """A module path with a private part, other than ``infinite_width._src.*`` (public inside the package)."""
    inside_src = module == PRIVATE_PACKAGE or module.startswith(PRIVATE_PACKAGE + ".")
    return not inside_src and any(_is_private(part) for part in module.split("."))


def import_graph(modules: dict) -> dict:
    """``{module: {imported package modules}}``: only imports of modules of the package count."""
    graph = {name: set() for name in modules}
    for name, (_, tree) in modules.items():
        for _, module, _ in _imports(name, tree, modules):
            if module in modules and module != name:
                graph[name].add(module)
    return graph


def find_cycle(graph: dict):
    """One import cycle as a list of modules ``[a, b, ..., a]``, or None."""
    state = {}  # 1: on the current path, 2: done
    path = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def _private_members(modules: dict) -> dict:
    """``{private attribute name: {modules whose classes define it}}``."""
    owners = {}
    for name, (_, tree) in modules.items():
        for cls in (node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)):
            for item in ast.walk(cls):
                defined = None
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    defined = item.name
                elif isinstance(item, ast.Attribute) and isinstance(item.value, ast.Name) and item.value.id == "self":
                    defined = item.attr
                if defined and _is_private(defined):
                    owners.setdefault(defined, set()).add(name)
    return owners


def private_crossings(name: str, tree: ast.AST, modules: dict, private_members: dict) -> list:
    """Places where ``name`` uses a private name of another module of the package (``_src`` excepted)."""
    found = []
    imported = {}  # local name -> package module it refers to (or comes from)
    for line, module, taken in _imports(name, tree, modules):
        if not (module == PACKAGE or module.startswith(PACKAGE + ".")):
            continue
        if _private_module(module):
            found.append(f"{name}:{line} imports the private module {module}")
        if module.startswith(PRIVATE_PACKAGE):
            continue
        for item in taken:
            if _is_private(item):
                found.append(f"{name}:{line} imports {item} from {module}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                imported[alias.asname or alias.name.split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, name, modules)
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{source}.{alias.name}"
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
            continue
        base = node.value
        if isinstance(base, ast.Name) and base.id in imported:
            origin = imported[base.id]
            if origin.startswith(PACKAGE) and not origin.startswith(PRIVATE_PACKAGE):
                found.append(f"{name}:{node.lineno} uses {base.id}.{node.attr} ({origin})")
        elif not (isinstance(base, ast.Name) and base.id in ("self", "cls")):
            owners = private_members.get(node.attr, set())
            if owners and name not in owners:
                found.append(f"{name}:{node.lineno} uses .{node.attr}, private to {sorted(owners)}")
    return found


def neural_tangents_importers(modules: dict) -> list:
    return sorted(
        f"{name}:{line}"
        for name, (_, tree) in modules.items()
        for line, module, _ in _imports(name, tree, modules)
        if module == "neural_tangents" or module.startswith("neural_tangents.")
    )


def shadowed_submodules(modules: dict) -> list:
    """Names bound in a package's ``__init__`` that hide a submodule of the same name (``pkg.sweep``)."""
    found = []
    for name, (_, tree) in modules.items():
        if not _is_package(name, modules):
            continue
        for node in tree.body:
            bound = []
            if isinstance(node, ast.ImportFrom):
                source = _absolute(node, name, modules)
                bound = [(alias.asname or alias.name, f"{source}.{alias.name}") for alias in node.names]
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                bound = [(node.name, None)]
            elif isinstance(node, ast.Assign):
                bound = [(target.id, None) for target in node.targets if isinstance(target, ast.Name)]
            for local, origin in bound:
                submodule = f"{name}.{local}"
                if submodule in modules and origin != submodule:
                    found.append(f"{name}.{local} is not the module {submodule}")
    return found


# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def modules():
    return _modules()


def test_the_package_is_found_and_layered(modules):
    for layer in ("_src", "kernels", "finite", "limits", "limits.adam_limit", "workflow", "experiments", "datasets"):
        assert f"{PACKAGE}.{layer}" in modules and _is_package(f"{PACKAGE}.{layer}", modules), layer
    assert len(modules) > 30


def test_no_import_cycle(modules):
    cycle = find_cycle(import_graph(modules))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_private_name_crosses_modules(modules):
    members = _private_members(modules)
    found = [item for name, (_, tree) in modules.items() for item in private_crossings(name, tree, modules, members)]
    assert found == []


def test_only_the_shim_imports_neural_tangents(modules):
    importers = neural_tangents_importers(modules)
    assert importers and all(place.startswith(SHIM + ":") for place in importers), importers


def test_no_package_attribute_hides_a_submodule(modules):
    assert shadowed_submodules(modules) == []


def _script_trees():
    for folder in ("paper_figures", "benchmarks"):
        for path in sorted((ROOT / folder).glob("*.py")):
            yield f"{folder}/{path.name}", ast.parse(path.read_text(), str(path))
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        source = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
        yield f"notebooks/{path.name}", ast.parse(source, str(path))


def test_scripts_and_notebooks_use_the_public_api_only(modules):
    found = []
    for where, tree in _script_trees():
        for line, module, taken in _imports("__script__", tree, modules):
            if not module.startswith(PACKAGE):
                continue
            if any(_is_private(part) for part in module.split(".")) or module.endswith("__main__"):
                found.append(f"{where}:{line} imports {module}")
            found += [f"{where}:{line} imports {item} from {module}" for item in taken if _is_private(item)]
        found += [
            f"{where}:{node.lineno} uses .{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and _is_private(node.attr)
        ]
    assert found == []


# --------------------------------------------------------------------------
# The checks catch what they are for: a synthetic package with each defect.


def _write(root: Path, files: dict) -> Path:
    for relative, text in files.items():
        path = root / PACKAGE / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / PACKAGE


def test_the_checks_catch_each_defect(tmp_path):
    package = _write(tmp_path, {
        "__init__.py": "from infinite_width.b import b\n",
        "a.py": "def f():\n    from infinite_width import b\n",
        "b.py": (
            "import neural_tangents\nfrom infinite_width.c import _hidden\nfrom infinite_width import c\n"
            "def b(x):\n    return c._helper(x._split())\n"
        ),
        "c.py": "from . import a\nclass T:\n    def _split(self):\n        pass\n_hidden = 1\n",
        "_src/__init__.py": "",
        "_src/nt.py": "import neural_tangents\n",
    })
    modules = _modules(package)
    cycle = find_cycle(import_graph(modules))
    assert cycle[0] == cycle[-1] and sorted(cycle[1:]) == ["infinite_width.a", "infinite_width.b", "infinite_width.c"]
    crossings = private_crossings("infinite_width.b", modules["infinite_width.b"][1], modules,
                                  _private_members(modules))
    assert len(crossings) == 3 and "_hidden" in crossings[0] and "c._helper" in crossings[1]
    assert "_split" in crossings[2]
    assert neural_tangents_importers(modules) == ["infinite_width._src.nt:1", "infinite_width.b:1"]
    assert shadowed_submodules(modules) == ["infinite_width.b is not the module infinite_width.b"]


def _declared_names(tree: ast.AST):
    """The names of a module's ``__all__`` (a list or tuple of strings at module level), or None."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return {element.value for element in node.value.elts if isinstance(element, ast.Constant)}
    return None


def test_benchmarks_import_only_declared_names(modules):
    """Every ``infinite_width`` name a benchmark imports is in its module's ``__all__`` (a declared API)."""
    undeclared = []
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for line, module, taken in _imports("__script__", tree, modules):
            if module not in modules or not taken:
                continue
            declared = _declared_names(modules[module][1]) or set()
            undeclared += [f"benchmarks/{path.name}:{line} imports {item} from {module}"
                           for item in taken if item not in declared]
    assert undeclared == []
