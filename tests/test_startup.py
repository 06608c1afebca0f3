"""Start-up: ``import infinite_width`` and ``python -m infinite_width --help`` load no jax (issue 21).

jax takes seconds to import; the package's names and its ``experiments`` are imported on first use
(PEP 562), and the demo imports the solvers only when it solves. Durations are measured by
``benchmarks/bench_import.py``, not asserted here (a timed unit test fails under load).
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import infinite_width

INIT = Path(infinite_width.__file__)

LOADED_BY_HELP = """
import json, runpy, sys
sys.argv = ["infinite_width", *{arguments!r}]
try:
    runpy.run_module("infinite_width", run_name="__main__")
except SystemExit as stop:
    code = stop.code
print(json.dumps({{"code": code, "jax": "jax" in sys.modules, "matplotlib": "matplotlib" in sys.modules}}))
"""

EVERY_NAME = """
import importlib, json, sys
import infinite_width as iw
loaded_by_import = "jax" in sys.modules
wrong = [name for name, module in iw._MODULE_OF.items()
         if getattr(iw, name) is not getattr(importlib.import_module(module), name)]
star = {}
exec("from infinite_width import *", star)
print(json.dumps({"jax_after_import": loaded_by_import, "wrong": wrong,
                  "missing_from_star": sorted(set(iw.__all__) - set(star)), "in_dir": set(iw._MODULE_OF) <= set(dir(iw))}))
"""


def _last_json_line(code: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_help_and_bad_options_import_no_jax():
    for arguments, code in ((["--help"], 0), (["demo", "--help"], 0), (["demo", "--widths", "ten"], 2)):
        report = _last_json_line(LOADED_BY_HELP.format(arguments=arguments))
        assert report == {"code": code, "jax": False, "matplotlib": False}, arguments


def test_every_name_is_imported_on_first_use_from_its_module():
    report = _last_json_line(EVERY_NAME)
    assert report == {"jax_after_import": False, "wrong": [], "missing_from_star": [], "in_dir": True}


def test_the_lazy_names_are_those_the_type_checkers_and_the_reference_see():
    """``if TYPE_CHECKING:`` imports (read by type checkers and griffe) name the same objects as ``_LAZY_NAMES``."""
    imported = {}
    for node in ast.walk(ast.parse(INIT.read_text())):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for statement in node.body:
                imported.update({alias.name: statement.module for alias in statement.names})
    assert imported == infinite_width._MODULE_OF
    exported = set(infinite_width.__all__) - {"__version__"} - set(infinite_width._SUBMODULES)
    assert exported == set(imported)
