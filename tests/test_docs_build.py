"""The API reference builds and reads as documentation: no literal Sphinx roles or RST tables, no broken
cross-references, every parameter of every public function documented.

The site is built by ``mkdocs build --strict`` (mkdocs.yml), so a docstring griffe cannot parse, a
cross-reference autorefs cannot resolve or an ``Args:`` entry naming no parameter fails the build. The
parameters are checked here with griffe, the parser the reference is built with.
"""

import re
import subprocess
import sys
from pathlib import Path

import griffe  # the test extra installs mkdocstrings[python], which brings it
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "infinite_width"
# What Sphinx writes and Markdown shows as text: roles, simple-table rules, a paragraph ending in "::".
LITERAL_MARKUP = re.compile(r":(?:py:)?(?:class|func|mod|data|meth|attr|exc|obj|const):`|={3,} +={3,}|::</p>")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    # Strict mode turns every warning (griffe's docstring parse, autorefs' unresolved targets) into a failure.
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return out


def test_the_api_reference_builds_with_no_warning_and_renders_the_kernels(site):
    page = (site / "api" / "kernels" / "index.html").read_text()
    # nngp's own section lists every parameter (its Args were once appended at run time, invisible to griffe).
    section = page[page.index('id="infinite_width.kernels.analytic.nngp"'):]
    section = section[:section.index('id="infinite_width.kernels.analytic.ntk"')]
    for parameter in ("arch", "x1", "x2", "batch_size", "dtype", "max_memory_bytes"):
        assert f"<code>{parameter}</code>" in section, parameter
    # Markdown tables of docstrings became HTML tables (the module docstring of optim has one).
    assert "<table>" in (site / "api" / "index.html").read_text()


def test_no_page_shows_sphinx_or_rst_markup_as_text(site):
    found = []
    for page in sorted(site.rglob("*.html")):
        for match in LITERAL_MARKUP.finditer(page.read_text()):
            found.append(f"{page.relative_to(site)}: {match.group(0)!r}")
    assert found == []


def test_the_check_for_literal_markup_sees_it():
    html = "<p>see :func:`nngp` and</p><p>====  ====</p><p>the formula::</p>"
    assert len(LITERAL_MARKUP.findall(html)) == 3


def _public_modules(module):
    yield module
    for name, submodule in sorted(module.modules.items()):
        if not name.startswith("_"):
            yield from _public_modules(submodule)


def _public_objects(package):
    """Every function, class and method of the public API, each once: what ``__all__`` exports (or the
    public names defined in a module without one), followed to where it is defined."""
    seen = {}
    for module in _public_modules(package):
        if module.exports is not None:
            names = [str(name) for name in module.exports]
        else:
            names = [name for name, member in module.members.items() if not member.is_alias]
        for name in names:
            if name.startswith("_") or name not in module.members:
                continue
            obj = module.members[name]
            if obj.is_alias:
                try:
                    obj = obj.final_target
                except griffe.AliasResolutionError:
                    continue  # another library's object re-exported
            if obj.is_function or obj.is_class:
                seen.setdefault(obj.path, obj)
    for obj in list(seen.values()):
        if obj.is_class:
            for name, member in obj.members.items():
                if member.is_function and not member.is_alias and (not name.startswith("_") or name == "__init__"):
                    seen.setdefault(member.path, member)
    return [seen[path] for path in sorted(seen)]


def _documented_names(docstring, kinds=("parameters", "other parameters")):
    if docstring is None:
        return set()
    names = set()
    for section in docstring.parsed:
        if section.kind.value in kinds:
            # One name per entry: griffe reads "a, b: text" as the name "a," of type "b".
            names.update(entry.name.lstrip("*") for entry in section.value)
    return names


def _inherited_docstring(method):
    """The docstring of the method a class member overrides, for a member without one (as ``inspect.getdoc``)."""
    if method.docstring is not None or not method.parent.is_class:
        return method.docstring
    for base in method.parent.mro():
        if method.name in base.members and base.members[method.name].docstring is not None:
            return base.members[method.name].docstring
    return None


def undocumented_parameters(package):
    """``{path: [parameter, ...]}`` of the public functions and methods whose docstrings leave parameters out.

    A parameter counts as documented in the ``Args:`` section of the function, of the method it overrides
    (when it has no docstring of its own), or, for ``__init__``, of its class (``Args:`` or, for the
    fields of a dataclass, ``Attributes:``).
    """
    missing = {}
    for function in _public_objects(package):
        if not function.is_function:
            continue
        parameters = [p.name for p in function.parameters if p.name not in ("self", "cls")]
        documented = _documented_names(_inherited_docstring(function))
        if function.name == "__init__":
            documented |= _documented_names(function.parent.docstring, ("parameters", "other parameters",
                                                                        "attributes"))
        absent = [name for name in parameters if name not in documented]
        if absent:
            missing[function.path] = absent
    return missing


def load_package(search_path: Path):
    return griffe.load(PACKAGE, search_paths=[str(search_path)], docstring_parser="google",
                       docstring_options={"warn_missing_types": False},
                       resolve_aliases=True, resolve_external=False)


def test_every_public_function_documents_every_parameter():
    assert undocumented_parameters(load_package(ROOT / "src")) == {}


def test_the_parameter_check_sees_a_missing_and_an_inherited_parameter(tmp_path):
    package = tmp_path / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text('''"""A package."""

__all__ = ["documented", "undocumented", "Base", "Child"]


def documented(a, *args, b=1, **kwargs):
    """Doc.

    Args:
      a: one.
      *args: more.
      b: two.
      **kwargs: the rest.
    """


def undocumented(a, b):
    """Doc.

    Args:
      a: one.
    """


class Base:
    """A base."""

    def run(self, x):
        """Run.

        Args:
          x: the input.
        """


class Child(Base):
    """A child whose run inherits the documentation of Base.run."""

    def run(self, x):
        return x

    def extra(self, y):
        """Undocumented parameter."""
''')
    assert undocumented_parameters(load_package(tmp_path)) == {
        f"{PACKAGE}.undocumented": ["b"], f"{PACKAGE}.Child.extra": ["y"],
    }
