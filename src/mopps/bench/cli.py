"""``mopps bench``: every selector against Uniform, DS and the exact oracle on the embedded testbed.

Only argparse is imported here; torch, matplotlib and the testbed load inside the handler, so
``mopps --help`` stays fast and ``import mopps`` never pulls torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PRESET_NAMES = ("recurring", "fresh", "tiny")  # mirrors mopps.bench.presets.PRESETS (kept torch-free)


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds = {text!r}; expected comma-separated integers like 0,1,2")


def register(subparsers) -> None:
    """Add the ``bench`` subcommand to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "bench", help="compare prompt selectors on the embedded RL testbed (exact success rates)",
        description="Runs GRPO on reversed-digit addition with each selector and seed, measures accuracy, "
                    "rollouts and prediction quality against exact success rates, and writes "
                    "results.json, curves.csv, steps.csv and PNG plots.")
    parser.add_argument("--preset", default="recurring", choices=PRESET_NAMES,
                        help="recurring: paper's regime, prompts seen 10-30 times; fresh: large pool, "
                             "prompts seen at most a few times; tiny: seconds, for CI (default: recurring)")
    parser.add_argument("--quick", action="store_true", help="one seed, half the steps (under 2 minutes on 2 idle cores)")
    parser.add_argument("--seeds", type=_int_list, default=None, help="comma-separated RL seeds (default: the preset's)")
    parser.add_argument("--steps", type=int, default=None, help="GRPO steps per run (default: the preset's)")
    parser.add_argument("--selectors", default=None,
                        help="comma-separated subset of uniform,ds,mopps,mopps_lambda0.5,mopps_threshold,"
                             "history,oracle,contextual,contextual_nofeatures,contextual_taskfeatures (default: all)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, one core each (default: 2)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: runs/bench/<preset>[-quick])")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=handle_bench)


def handle_bench(args) -> int:
    """Run the bench described by ``args``; print the tables; return the exit code."""
    from mopps.bench.plots import write_plots
    from mopps.bench.presets import resolve
    from mopps.bench.report import format_report, write_outputs
    from mopps.bench.runner import run_all
    from mopps.bench.summary import summarize
    from mopps.testbed.grpo import config_dict
    from mopps.testbed.methods import METHODS

    methods = list(METHODS) if args.selectors is None else [name.strip() for name in args.selectors.split(",")]
    unknown = [name for name in methods if name not in METHODS]
    if unknown or not methods:
        raise SystemExit(f"mopps bench: --selectors = {args.selectors!r}; unknown {unknown}; choose from {', '.join(METHODS)}")
    if args.steps is not None and args.steps < 1:
        raise SystemExit(f"mopps bench: --steps = {args.steps}; it must be >= 1")
    if args.workers < 1:
        raise SystemExit(f"mopps bench: --workers = {args.workers}; it must be >= 1")
    config, seeds = resolve(args.preset, quick=args.quick, steps=args.steps, seeds=args.seeds)
    if not seeds:
        raise SystemExit("mopps bench: --seeds is empty; give at least one seed")
    out = args.out or Path("runs") / "bench" / (args.preset + ("-quick" if args.quick else ""))
    print(f"mopps bench: preset {args.preset}, {config.steps} steps, seeds {list(seeds)}, "
          f"selectors {', '.join(methods)}, {args.workers} worker(s) -> {out}")
    results = run_all(config, methods, list(seeds), workers=args.workers, show_progress=not args.no_progress)
    document = summarize({"preset": args.preset, "quick": args.quick, **config_dict(config)}, list(seeds), results)
    write_outputs(out, document, results)
    plots = write_plots(out, document, results)
    print()
    print(format_report(document))
    print(f"\nwrote {out / 'results.json'}, curves.csv, steps.csv, {', '.join(path.name for path in plots)}")
    return 0
