"""The notebooks run in the README's quick-start environment: every code cell in order, in one namespace,
with the ``test`` extra's hypothesis (and so ``infinite_width.testing``) unavailable (issue 21)."""

import json
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_cells_run_without_the_test_extra(path, capsys, monkeypatch):
    # None in sys.modules makes an import fail, even of a module this process already imported.
    for module in ("hypothesis", "infinite_width.testing"):
        monkeypatch.setitem(sys.modules, module, None)
    cells = json.loads(path.read_text())["cells"]
    namespace = {"__name__": "__notebook__"}
    for index, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            exec(compile(source, f"{path.name}[cell {index}]", "exec"), namespace)
    assert capsys.readouterr().out  # the cells print their results


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_with_their_outputs_and_no_error(path):
    cells = [cell for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]
    outputs = [output for cell in cells for output in cell["outputs"]]
    assert all(cell["outputs"] for cell in cells), (
        "save the notebook with its outputs: pip install nbclient ipykernel (beside the project), then "
        f"jupyter execute --inplace {path.name}")
    assert [o for o in outputs if o["output_type"] == "error" or o.get("name") == "stderr"] == []
