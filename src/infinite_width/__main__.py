"""Command line: ``python -m infinite_width demo`` (see [`infinite_width.experiments.demo`][])."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from infinite_width.experiments import demo

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infinite_width", description=demo.__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo.add_arguments(commands.add_parser(
        "demo", help="compare every regime on one data set", description=demo.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m infinite_width`` and the ``infinite-width`` script."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return demo.run(args)
    return 2  # argparse rejects unknown commands before this


if __name__ == "__main__":
    sys.exit(main())
