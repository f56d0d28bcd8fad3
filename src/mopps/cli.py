"""The ``mopps`` command: parses arguments and hands each subcommand to the layer that owns it."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="mopps", description="Online prompt selection for RL finetuning of reasoning models."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    # Each layer registers its own subcommand; heavy imports happen inside the handlers.
    from mopps.bench.cli import register as register_bench

    register_bench(subparsers)
    return parser, subparsers


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mopps`` console script; returns the process exit code."""
    parser, _ = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
