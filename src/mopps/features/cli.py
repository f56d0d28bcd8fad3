"""``mopps features --data FILE --out FILE ...``: per-prompt features for a contextual selector.

Two sources, one output format (:mod:`mopps.features.files`):

- ``--model PATH``: mean-pooled hidden states of the frozen base model (resumable);
- ``--categorical COL ... / --numeric COL ... / --length chars|tokens``: dataset columns.

``mopps.cli`` calls :func:`register`; torch, transformers and pyarrow load only when it runs.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``features`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    parser = subparsers.add_parser(
        "features",
        help="per-prompt features (frozen base-model embeddings or dataset columns) for a contextual selector",
        description=(
            "Write a feature file (.npz, float32 rows keyed by prompt id) for a prepared dataset (a verl "
            "parquet or TRL folder from `mopps data`). With --model: mean-pooled hidden states of the "
            "frozen base model, resumable. Otherwise: one-hot --categorical columns, standardised --numeric "
            "columns and/or --length. Never compute features from the policy being trained."
        ),
    )
    parser.add_argument("--data", required=True, help="a .parquet file or TRL dataset folder written by `mopps data`")
    parser.add_argument("--out", required=True, help="the feature file to write (.npz)")
    parser.add_argument("--id", dest="id_key", default="prompt_id",
                        help="prompt id: prompt_id (content hash, default), index (row in split), verl "
                             "(data_source/extra_info.index, the verl adapter's key) or a column path")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    embedding = parser.add_argument_group("frozen embeddings")
    embedding.add_argument("--model", help="the base model (local folder or Hub name) whose hidden states to pool")
    embedding.add_argument("--layer", type=int, default=-1,
                           help="hidden state to pool: 0 = embeddings, -1 = last layer (default)")
    embedding.add_argument("--batch-size", type=int, default=16, help="prompts per forward pass")
    embedding.add_argument("--max-length", type=int, default=1024, help="tokens kept per prompt (the first ones)")
    embedding.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    embedding.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                           help="model weights (auto: bfloat16 on cuda, float32 elsewhere)")
    embedding.add_argument("--project-to", type=int, default=None, metavar="D",
                           help="random projection to D dimensions (file: 4*D bytes per prompt)")
    embedding.add_argument("--projection", default="gaussian", choices=("gaussian", "achlioptas"))
    embedding.add_argument("--projection-seed", type=int, default=0)
    embedding.add_argument("--chunk-size", type=int, default=1024,
                           help="prompts per partial result; a rerun continues after the last one written")
    embedding.add_argument("--no-chat-template", action="store_true",
                           help="embed the message texts joined by newlines even if the tokenizer has a chat template")
    columns = parser.add_argument_group("dataset columns")
    columns.add_argument("--categorical", nargs="+", action="extend", default=[], metavar="COL",
                         help="one-hot columns, e.g. extra_info.level extra_info.type")
    columns.add_argument("--numeric", nargs="+", action="extend", default=[], metavar="COL",
                         help="standardised numeric columns, e.g. reward_model.ground_truth.target")
    columns.add_argument("--length", choices=("chars", "tokens"), default=None,
                         help="add log(1 + prompt length), standardised")
    columns.add_argument("--tokenizer", default=None, help="tokenizer for --length tokens")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Compute and write the features; prints the output path, its shape and its size."""
    from mopps.features.files import load_features, save_features

    column_mode = bool(args.categorical or args.numeric or args.length)
    try:
        if args.model and column_mode:
            raise ValueError("--model (embeddings) and column options build different files; run them separately")
        if args.model:
            from mopps.features.embeddings import compute_embedding_features

            out = compute_embedding_features(
                args.model, args.data, args.out, id_key=args.id_key, layer=args.layer, batch_size=args.batch_size,
                max_length=args.max_length, device=args.device, dtype=args.dtype, project_to=args.project_to,
                projection=args.projection, projection_seed=args.projection_seed, chunk_size=args.chunk_size,
                chat_template=not args.no_chat_template, overwrite=args.overwrite, progress=not args.no_progress,
            )
        elif column_mode:
            from pathlib import Path

            from mopps.features.columns import column_features

            if Path(args.out).exists() and not args.overwrite:
                raise ValueError(f"{args.out} exists; delete it, choose another --out, or pass --overwrite")
            tokenizer = None
            if args.length == "tokens":
                if args.tokenizer is None:
                    raise ValueError("--length tokens needs --tokenizer PATH")
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
            ids, X, meta = column_features(
                args.data, categorical=args.categorical, numeric=args.numeric, length=args.length,
                tokenizer=tokenizer, chat_template=not args.no_chat_template, id_key=args.id_key,
            )
            out = save_features(args.out, ids, X, meta)
        else:
            raise ValueError("say what to compute: --model PATH, or --categorical/--numeric/--length")
        features = load_features(out)
    except (ValueError, FileNotFoundError) as error:
        print(f"mopps features: {error}", file=sys.stderr)
        return 2
    count, dimension = features.X.shape
    print(f"{out}: {count} prompts x {dimension} features ({features.meta['source']}), "
          f"{out.stat().st_size / count:.0f} bytes per prompt")
    return 0
