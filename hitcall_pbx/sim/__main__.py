"""`python -m hitcall_pbx.sim [simulate] [options]` — the simulate sub-command on its own."""

from __future__ import annotations

import argparse
import sys

from hitcall_pbx.sim.command import add_parser, run


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "simulate":
        argv.insert(0, "simulate")
    parser = argparse.ArgumentParser(prog="python -m hitcall_pbx.sim")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
