"""``mopps data <task> --out DIR``: prepare a task's data for verl (parquet) and TRL (HF datasets).

The lead's ``mopps.cli`` calls :func:`register` with its subparsers; the handler returns an exit
code. Heavy imports (datasets, pyarrow) happen only when the command runs.
"""

from __future__ import annotations

import argparse
import sys

TASKS = ("countdown", "math", "deepscaler", "geo3k")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``data`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    parser = subparsers.add_parser(
        "data",
        help="prepare task data (countdown, math, deepscaler, geo3k) for verl and TRL",
        description=(
            "Write <out>/<split>.parquet in verl's row format and <out>/trl/<split>/ as an HF dataset "
            "for TRL (load with datasets.load_from_disk)."
        ),
    )
    parser.add_argument("task", choices=TASKS)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--source",
        default=None,
        help=(
            "where the data comes from: a Hub dataset name or a local directory/file. countdown: "
            "omit to generate solvable instances, 'hub' for the variant's Jiayi-Pan dataset; math: "
            "default DigitalLearningGmbH/MATH-lighteval; geo3k: default hiyouga/geometry3k; "
            "deepscaler: required, the DeepScaleR 'data' directory with train/ and test/ JSON files"
        ),
    )
    parser.add_argument("--variant", choices=("3to4", "4"), default="3to4", help="countdown: 3-4 or 4 numbers")
    parser.add_argument("--train-size", type=int, default=2000, help="countdown: training rows (0: none)")
    parser.add_argument("--test-size", type=int, default=512, help="countdown: test rows")
    parser.add_argument("--seed", type=int, default=0, help="countdown: generator seed")
    parser.add_argument("--template", choices=("base", "chat"), default="base", help="countdown: prompt template")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Prepare and write the requested task; prints one line per written path."""
    from mopps.tasks import prepare

    progress = not args.no_progress
    try:
        if args.task == "countdown":
            splits = prepare.prepare_countdown(
                variant=args.variant, source=args.source, train_size=args.train_size,
                test_size=args.test_size, seed=args.seed, template=args.template, progress=progress,
            )
        elif args.task == "math":
            splits = prepare.prepare_math(args.source or prepare.MATH_HUB, progress=progress)
        elif args.task == "geo3k":
            splits = prepare.prepare_geo3k(args.source or prepare.GEO3K_HUB, progress=progress)
        else:
            if args.source is None:
                message = "mopps data deepscaler: --source DIR is required (the DeepScaleR data directory)"
                print(message, file=sys.stderr)
                return 2
            splits = prepare.prepare_deepscaler(args.source, progress=progress)
    except ValueError as error:
        print(f"mopps data {args.task}: {error}", file=sys.stderr)
        return 2
    for stem, (_, records) in splits.items():
        print(f"{stem}: {len(records)} prompts")
    for path in prepare.write_prepared(splits, args.out):
        print(path)
    return 0
