"""The ``mopps`` command: parses arguments and hands each subcommand to the layer that owns it.

Subcommands: ``mopps bench`` (the embedded RL testbed benchmark, ``mopps.bench.cli``),
``mopps replay`` (selectors scored offline on a logged evidence stream, ``mopps.bench.replay``),
``mopps data`` (task data preparation, ``mopps.tasks.cli``) and ``mopps features`` (per-prompt
features for contextual selectors, ``mopps.features.cli``). Each layer registers its own parser;
heavy imports (torch, datasets) happen inside the handlers, so ``mopps --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys

from mopps.bench.cli import register as register_bench
from mopps.bench.cli import register_replay
from mopps.features.cli import register as register_features
from mopps.tasks.cli import register as register_data


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="mopps", description="Online prompt selection for RL finetuning of reasoning models."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    register_bench(subparsers)
    register_replay(subparsers)
    register_data(subparsers)
    register_features(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mopps`` console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
