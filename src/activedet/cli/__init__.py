"""Command line: ``python -m activedet <step> ...`` with explicit input and output paths.

Each step is what one pipeline job runs. Parameters come from ``--params``: a
params.yaml, or an inline JSON object (what the Snakemake rules pass), always
validated against the schema with defaults filled.
"""
from __future__ import annotations

import argparse
import sys

from ..io import InputError
from . import cycle, data, hitl, mgral, paper, reports, train
from .common import flush_audits

# One module per family of steps, each registering its own commands (in this order in --help).
FAMILIES = (data, train, cycle, reports, hitl, mgral, paper)


def build_parser() -> argparse.ArgumentParser:
    # The docstring's reST markup (double backticks) is for the API docs, not for a terminal.
    parser = argparse.ArgumentParser(prog="python -m activedet", description=__doc__.replace("``", ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, fn, help_):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    for family in FAMILIES:
        family.register(add)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except InputError as e:
        print("\n".join(f"error: {line}" for line in str(e).splitlines()), file=sys.stderr)
        return 2
    except OSError as e:  # a user's path that is missing, a folder, or not readable: name it, no traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    finally:
        flush_audits()
