"""``mopps bench``: every selector against Uniform, DS and the exact oracle on the embedded testbed.

Only argparse is imported here; torch, matplotlib and the testbed load inside the handler, so
``mopps --help`` stays fast and ``import mopps`` never pulls torch.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from mopps.core.validation import check_integer

PRESET_NAMES = ("recurring", "fresh", "transfer", "tiny")  # mirrors mopps.bench.presets.PRESETS (torch-free)
TASK_NAMES = ("addition", "sort")  # mirrors mopps.testbed.task.BUILTIN_TASKS


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds = {text!r}; expected comma-separated integers like 0,1,2")


def register(subparsers) -> None:
    """Add the ``bench`` subcommand to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "bench", help="compare prompt selectors on the embedded RL testbed (exact success rates)",
        description="Runs GRPO on a testbed task with each selector and seed, measures accuracy, rollouts and "
                    "prediction quality against exact success rates, with 90%% intervals over seeds, "
                    "and writes results.json, curves.csv, steps.csv and PNG plots. With --map, sweeps the pool "
                    "size and draws speedup against visits per prompt.")
    parser.add_argument("--preset", default=None, choices=PRESET_NAMES,
                        help="recurring: paper's regime, prompts seen 10-30 times; fresh: large pool, "
                             "prompts seen at most a few times; transfer: an update moves untrained prompts "
                             "almost as much as trained ones; tiny: seconds, for CI (default: recurring; with "
                             "--quick, fresh and recurring both, since the answer differs by regime)")
    parser.add_argument("--task", default=None,
                        help=f"built-in task ({', '.join(TASK_NAMES)}; default: the preset's) or "
                             "package.module:Class for your own (see docs/bench.md, 'Your own task')")
    parser.add_argument("--warm-start-steps", type=int, default=None,
                        help="supervised warm-start steps (default: the preset's calibrated value; set it for "
                             "your own task so the start's zero-variance share is 40-80%%)")
    parser.add_argument("--quick", action="store_true", help="one seed, at most 200 steps, four selectors unless --selectors says otherwise (uniform, mopps_lambda0.5, contextual, oracle), fresh and recurring: a check, no intervals")
    parser.add_argument("--seeds", type=_int_list, default=None, help="comma-separated RL seeds (default: the preset's)")
    parser.add_argument("--steps", type=int, default=None, help="GRPO steps per run (default: the preset's)")
    parser.add_argument("--pool-seed", type=int, default=None,
                        help="which prompts form the pool and test set (default: the preset's, 1234); another "
                             "value gives held-out pools for tuning")
    parser.add_argument("--pool-per-seed", action="store_true",
                        help="each RL seed draws its own pool and test set (pool seed + RL seed), so the "
                             "paired intervals cover the draw of the pool as well as the run")
    parser.add_argument("--selectors", default=None,
                        help="comma-separated subset of the methods (default: every selector; the gain-curve "
                             "instruments oracle_noise:<fresh|persistent|visit>:<sd>, oracle_pilot:<m> and "
                             "oracle_informative on request; see docs/bench.md)")
    parser.add_argument("--map", action="store_true",
                        help="regime map: run every selector at several pool sizes (visits per prompt ~0.5 to ~30) "
                             "and plot speedup vs Uniform against visits per prompt")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, one core each (default: 2)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: runs/bench/<preset>[-<task>][-map][-quick])")
    parser.add_argument("--no-progress", action="store_true", help="hide progress")
    parser.add_argument("--resummarize", type=Path, default=None, metavar="DIR",
                        help="run nothing: recompute the summary, tables and plots of the bench in DIR from its "
                             "runs.json.gz with this version's statistics (writes into DIR)")
    parser.add_argument("--with", dest="with_runs", type=Path, nargs="+", default=(), metavar="OTHER",
                        help="with --resummarize: add the methods of these bench folders (same config and seeds, "
                             "e.g. methods run later) to DIR's table")
    parser.set_defaults(func=handle_bench)


def handle_bench(args) -> int:
    """Run the bench (or the regime map) described by ``args``; print the report; return the exit code."""
    if args.resummarize is not None:
        return _handle_resummarize(args.resummarize, list(args.with_runs))
    if args.with_runs:
        raise SystemExit("mopps bench: --with goes with --resummarize DIR")
    from mopps.bench.presets import QUICK_METHODS, QUICK_PRESETS
    from mopps.testbed.methods import INSTRUMENT_PATTERNS, METHODS, is_method

    if args.selectors is None:
        methods = list(QUICK_METHODS if args.quick else METHODS)
    else:
        methods = [name.strip() for name in args.selectors.split(",")]
    unknown = [name for name in methods if not is_method(name)]
    if unknown or not methods:
        raise SystemExit(f"mopps bench: --selectors = {args.selectors!r}; unknown {unknown}; choose from "
                         f"{', '.join(METHODS)} or the instruments {', '.join(INSTRUMENT_PATTERNS)}")
    if len(set(methods)) != len(methods):
        raise SystemExit(f"mopps bench: --selectors = {args.selectors!r} names a method twice")
    for flag, value in (("--steps", args.steps), ("--workers", args.workers), ("--warm-start-steps", args.warm_start_steps)):
        if value is not None:
            try:
                check_integer(value, flag, minimum=1)
            except ValueError as error:
                raise SystemExit(f"mopps bench: {error}") from None
    presets = [args.preset] if args.preset is not None else \
        list(QUICK_PRESETS) if args.quick and not args.map else ["recurring"]
    if args.map and len(presets) > 1:
        raise SystemExit("mopps bench: --map takes one --preset")
    plans = [_plan(args, preset, list(methods), several=len(presets) > 1) for preset in presets]
    if args.map:
        preset, config, seeds, chosen, out = plans[0]
        return _handle_map(args, config, seeds, chosen, out)
    from mopps.bench.plots import write_plots
    from mopps.bench.report import format_answer, format_report, write_outputs
    from mopps.bench.runner import evidence_log_path, run_jobs
    from mopps.bench.summary import summarize
    from mopps.testbed.grpo import config_dict

    # One pool of jobs over every preset, so no worker waits for another preset to start.
    jobs = [(config, method, seed, evidence_log_path(out / "evidence", method, seed))
            for _, config, seeds, chosen, out in plans for method in chosen for seed in seeds]
    finished = iter(run_jobs(jobs, args.workers, not args.no_progress))
    answers = []
    for preset, config, seeds, chosen, out in plans:
        results = {method: [next(finished) for _ in seeds] for method in chosen}
        document = summarize({"preset": preset, "quick": args.quick, **config_dict(config)}, list(seeds), results)
        write_outputs(out, document, results)
        plots = write_plots(out, document, results)
        print(f"\n== {preset} ==")
        print(format_report(document))
        print(f"\nwrote {out / 'results.json'}, curves.csv, steps.csv, {', '.join(path.name for path in plots)}")
        answers.append(f"{preset}: " + format_answer(document))
    if len(plans) > 1:
        print("\n== The answer differs by regime ==\n" + "\n\n".join(answers))
    return 0


def _plan(args, preset: str, methods: list[str], several: bool):
    """``(preset, config, seeds, methods, out)`` of one preset of this bench command."""
    from mopps.bench.presets import resolve

    try:
        config, seeds = resolve(preset, task=args.task, quick=args.quick, steps=args.steps,
                                seeds=args.seeds, warm_start_steps=args.warm_start_steps, regime_map=args.map)
        if args.pool_seed is not None:
            config = replace(config, pool_seed=args.pool_seed)
        if args.pool_per_seed:
            config = replace(config, pool_per_seed=True)
    except ValueError as error:
        raise SystemExit(f"mopps bench: {error}")
    if not seeds:
        raise SystemExit("mopps bench: --seeds is empty; give at least one seed")
    if "contextual_taskfeatures" in methods and getattr(config.warm_start.task, "features", None) is None:
        if args.selectors is not None:
            raise SystemExit(f"mopps bench: contextual_taskfeatures needs task features; the task "
                             f"{config.warm_start.task!r} defines none")
        methods.remove("contextual_taskfeatures")  # the default list: only the methods the task can run
    task_label = args.task.rpartition(":")[2].lower() if args.task else None
    suffix = "".join(part for part, wanted in ((f"-{task_label}", task_label), ("-map", args.map),
                                                ("-quick", args.quick)) if wanted)
    if args.out is None:
        out = Path("runs") / "bench" / (preset + suffix)
    else:
        out = args.out / preset if several else args.out
    print(f"mopps bench{' --map' if args.map else ''}: preset {preset}, task {task_label or 'the preset default'}, "
          f"{config.steps} steps, seeds {list(seeds)}, selectors {', '.join(methods)}, {args.workers} worker(s) "
          f"-> {out}", flush=True)
    return preset, config, list(seeds), methods, out


def _handle_map(args, config, seeds: list[int], methods: list[str], out: Path) -> int:
    from mopps.bench.regime_map import format_map, map_configs, plot_map, run_map

    configs = map_configs(config)
    document = run_map({"preset": args.preset, "quick": args.quick}, configs, seeds, methods, out,
                       workers=args.workers, show_progress=not args.no_progress)
    path = plot_map(out, document)
    print()
    print(format_map(document))
    print(f"\nwrote {out / 'map.json'}, {path.name}, and each pool size's results under {out}/pool-<size>/")
    return 0


def _handle_resummarize(out: Path, others: list[Path]) -> int:
    from mopps.bench.plots import write_plots
    from mopps.bench.report import format_report, read_runs, write_outputs
    from mopps.bench.summary import summarize

    try:
        config, seeds, results = read_runs(out)
        for other in others:
            other_config, other_seeds, other_results = read_runs(other)
            same = {key: value for key, value in other_config.items() if key != "quick"} == \
                {key: value for key, value in config.items() if key != "quick"}
            if not same or other_seeds != seeds:
                raise ValueError(f"{other} ran another config or other seeds than {out}; their runs do not pair")
            results.update({name: runs for name, runs in other_results.items() if name not in results})
    except ValueError as error:
        raise SystemExit(f"mopps bench --resummarize: {error}")
    document = summarize(config, seeds, results)
    write_outputs(out, document, results)
    plots = write_plots(out, document, results)
    print(format_report(document))
    print(f"\nwrote {out / 'results.json'}, curves.csv, steps.csv, {', '.join(path.name for path in plots)}")
    return 0


def register_replay(subparsers) -> None:
    """Add the ``replay`` subcommand: score selectors on logged evidence streams, offline."""
    parser = subparsers.add_parser(
        "replay", help="score selectors' predictions on a logged run (an evidence log), offline, in seconds",
        description="Feeds each evidence log (written by mopps bench, or by the TRL / verl adapters with "
                    "evidence_log set) to each selector and reports candidate Spearman, Brier, log-loss and "
                    "the zero-variance share of the batch it would have chosen. The log is not changed by the "
                    "selectors' choices: they are scored on prediction, not training (docs/bench.md, 'Replay').")
    parser.add_argument("logs", type=Path, nargs="+", metavar="LOG", help="evidence log files (.npz)")
    parser.add_argument("--selectors", default=None,
                        help="comma-separated bench names (default: every built-in selector that needs no exact "
                             "rates; see docs/bench.md, 'Offline replay')")
    parser.add_argument("--features", type=Path, default=None,
                        help="a mopps feature file (mopps features) handed to contextual selectors; without it "
                             "they predict from evidence alone")
    parser.add_argument("--seed", type=int, default=None, help="selectors' seed (default: the log's run seed)")
    parser.add_argument("--json", type=Path, default=None, help="also write the scores as JSON here")
    parser.set_defaults(func=handle_replay)


def handle_replay(args) -> int:
    """Replay every log through every selector; print the table; return the exit code."""
    from mopps.bench.replay import REPLAY_SELECTORS, build_replay_selector, format_replay, replay
    from mopps.loop.evidence_log import read_evidence_log
    from mopps.bench.summary import without_nan
    from mopps.storage import write_json

    names = list(REPLAY_SELECTORS) if args.selectors is None else [n.strip() for n in args.selectors.split(",")]
    unknown = [name for name in names if name not in REPLAY_SELECTORS]
    if unknown or not names:
        raise SystemExit(f"mopps replay: --selectors = {args.selectors!r}; unknown {unknown}; "
                         f"choose from {', '.join(REPLAY_SELECTORS)}")
    features = None
    if args.features is not None:
        from mopps.features.files import load_features

        try:
            loaded = load_features(args.features)
        except (OSError, ValueError) as error:
            raise SystemExit(f"mopps replay: --features: {error}")
        features = (loaded.ids, loaded.X)
    rows, document = [], {}
    for path in args.logs:
        try:
            stream = read_evidence_log(path)
        except (OSError, ValueError) as error:
            raise SystemExit(f"mopps replay: {error}")
        seed = int(stream.meta.get("seed") or 0) if args.seed is None else args.seed
        group_size = int(stream.meta.get("group_size", 8))
        for name in names:
            result = replay(stream, build_replay_selector(name, seed, group_size), features)
            rows.append((path.name, name, result))
            document.setdefault(str(path), {})[name] = {**result["scores"], "steps": result["steps"],
                                                        "exact": result["exact"], "seconds": result["seconds"]}
    print(format_replay(rows))
    if args.json is not None:
        write_json(args.json, without_nan(document))
        print(f"\nwrote {args.json}")
    return 0
