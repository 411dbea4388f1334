"""``rivergraph`` command line: one argparse subcommand per feature module.

Each module listed in ``_COMMAND_MODULES`` exposes ``register_cli(subparsers) -> None``, which adds its
subparser(s) with ``set_defaults(func=...)``; ``func(args) -> int`` is the exit code. Bad input
(ValueError, NetworkError, FileNotFoundError, pydantic ValidationError, KeyError) becomes one line
``rivergraph: error: <reason>`` on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

# PyTorch's CPU allocator backs tensors >= 2 MB with transparent huge pages when this is set (it is read at
# the first allocation, so it has to be set before any): routing fills fresh [T, N] arrays, and page faults
# on them cost ~20% of a large run (docs/routing.md). Export THP_MEM_ALLOC_ENABLE=0 to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__all__ = ["main", "build_parser"]

_COMMAND_MODULES = [
    "rivergraph.plots",
    "rivergraph.runs",
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="rivergraph",
        description="Graph-based, differentiable river network routing (Muskingum-Cunge) and stream temperature.")
    parser.add_argument("--version", action="version", version=f"rivergraph {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register_cli(sub)
    return parser


def _error_message(exc: BaseException) -> str:
    """One line naming what was wrong (pydantic errors are flattened to 'field: message; ...')."""
    errors = getattr(exc, "errors", None)
    if callable(errors) and type(exc).__name__ == "ValidationError":
        parts = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e.get("loc", ()))
            parts.append(f"{loc}: {e.get('msg', '')}" if loc else str(e.get("msg", "")))
        title = getattr(exc, "title", "config")
        return f"invalid {title}: " + "; ".join(parts)
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 on success)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    from pydantic import ValidationError

    from .graph.network import NetworkError

    try:
        return int(args.func(args) or 0)
    except (ValueError, NetworkError, FileNotFoundError, KeyError, ValidationError) as exc:
        print(f"rivergraph: error: {_error_message(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
