"""Command line: ``python -m infinite_width demo`` (see [`infinite_width.experiments.demo`][]).

``--help`` and argparse's errors are answered without importing jax (the
package and its ``experiments`` are imported lazily), in well under a second.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Optional, Sequence

from infinite_width.experiments import demo

__all__ = ["main", "plain_text"]

_LINK = re.compile(r"\[`([^`]*)`\]\[[^\]]*\]")


def plain_text(markdown: str) -> str:
    """A docstring as terminal text: cross-references ``[`x`][target]`` and code spans become their text.

    Args:
      markdown: a docstring in the package's Markdown.
    """
    return _LINK.sub(r"\1", markdown).replace("``", "").replace("`", "")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infinite_width",
        description="Infinitely wide neural networks beside finite ones. Command: demo, every regime side by "
                    "side on one data set (python -m infinite_width demo --help).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo.add_arguments(commands.add_parser(
        "demo", help="compare every regime on one data set", description=plain_text(demo.__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m infinite_width`` and the ``infinite-width`` script.

    Args:
      argv: the arguments after the program name; None reads ``sys.argv``.

    Returns:
      The exit status: 0, or 2 for bad options.
    """
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return demo.run(args)
    return 2  # argparse rejects unknown commands before this


if __name__ == "__main__":
    sys.exit(main())
