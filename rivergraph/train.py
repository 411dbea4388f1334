"""Training of parameter networks through the router (work in progress)."""
from __future__ import annotations

import argparse


def register_cli(subparsers) -> None:
    """Add the ``train`` and ``route`` subcommands."""
    for name, help_ in (("train", "train a parameter network through the router (CONFIG.yaml)"),
                        ("route", "route lateral inflow with trained parameters (CONFIG.yaml)")):
        p = subparsers.add_parser(name, help=help_, description=help_)
        p.add_argument("config", help="YAML configuration file")
        p.set_defaults(func=_not_ready)


def _not_ready(args: argparse.Namespace) -> int:
    raise ValueError(f"'{args.command}' is not implemented yet")
