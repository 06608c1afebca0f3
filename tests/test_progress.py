"""Progress bars are shown on a terminal and never written to a log file or a pipe (issue 21).

One module creates every bar (``infinite_width._src.progress``); a tqdm bar written to a file is
hundreds of carriage returns and cursor escapes.
"""

import ast
import io
from pathlib import Path

from conftest import TerminalStream as Terminal
from infinite_width._src.progress import progress_bar, shows_progress
from infinite_width.workflow import sweep

SRC = Path(__file__).resolve().parents[1] / "src" / "infinite_width"


def test_a_bar_is_drawn_on_a_terminal_and_not_into_a_file():
    terminal, log = Terminal(), io.StringIO()
    assert list(progress_bar(range(3), progress=True, file=terminal, desc="work", mininterval=0)) == [0, 1, 2]
    assert "work" in terminal.getvalue() and "3/3" in terminal.getvalue()
    assert list(progress_bar(range(3), progress=True, file=log, desc="work")) == [0, 1, 2]
    assert log.getvalue() == ""
    unasked = Terminal()
    assert list(progress_bar(range(3), progress=False, file=unasked)) == [0, 1, 2]
    assert unasked.getvalue() == ""


def test_streams_without_a_terminal_show_no_bar():
    class Closed(io.StringIO):
        def isatty(self):
            raise ValueError("I/O operation on closed file")

    assert shows_progress(True, Terminal()) and not shows_progress(False, Terminal())
    assert not shows_progress(True, io.StringIO()) and not shows_progress(True, Closed())
    assert not shows_progress(True, object())  # no isatty at all


def test_a_library_loop_asked_for_progress_writes_nothing_to_a_captured_stderr(tmp_path, capfd):
    # capfd replaces file descriptor 2 by a file, as a log redirection does
    assert sweep({}, tmp_path / "runs", progress=True) == {}
    captured = capfd.readouterr()
    assert "\r" not in captured.err and "\x1b[" not in captured.err and "sweep" not in captured.err


def test_tqdm_is_created_in_one_module_only():
    users = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            if any(name == "tqdm" or name.startswith("tqdm.") for name in names):
                users.append(path.relative_to(SRC).as_posix())
    assert sorted(set(users)) == ["_src/progress.py"]
