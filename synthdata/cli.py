"""``synthdata`` command line: one sub-command per stage, each a thin caller of the stage's ``run``."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from synthdata import generators
from synthdata.errors import GateFailed, RepoBusy, SynthdataError, shorten


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="synthdata", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def stage(name: str, help_: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help_)
        s.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
        return s

    stage("prepare", "load the data source and write the train/val/test split")
    stage("filter", "train the classifier of classifier-filtered sampling on the real train split (filter.enabled)")
    stage("reference", "train the real-data baseline classifiers and the domain feature extractor")
    for name, help_ in (
        ("train", "train generators"),
        ("sample", "sample synthetic + augmented datasets"),
        ("evaluate", "score synthetic datasets (FID, KID, PRDC, downstream check) and gate them"),
    ):
        s = stage(name, help_)
        s.add_argument(
            "--generator",
            choices=generators.generator_names(),
            action="append",
            help="generator to use (repeatable; default: every one in params 'generators')",
        )
    sub.choices["train"].add_argument(
        "--no-resume", action="store_true", help="start over even if a matching checkpoint exists"
    )
    sub.choices["sample"].add_argument("--checkpoint", help="checkpoint file or folder (default: paths.models/NAME)")
    stage("publish", "stage the gated augmented dataset for release (data/published)")
    stage("report", "write the markdown report of the run (data/report)")
    rel = stage("release", "after 'dvc repro': push to the DVC remote, record the version, git-tag it")
    rel.add_argument("--remote", help="DVC remote to push to (default: the repository's default remote)")
    return p


# One orchestrator: `dvc repro` (and the Prefect flow, which runs it) orders the stages; this CLI runs one.
PER_GENERATOR = {"train", "sample", "evaluate"}


def _stage(name: str):
    """The stage module, imported by name: a stage's command imports that stage only (its DVC code deps)."""
    return importlib.import_module(f"synthdata.{name}")


def _run(args: argparse.Namespace) -> None:
    from synthdata.params import load_params

    params = load_params(args.params)
    names = getattr(args, "generator", None) or params.generators
    if getattr(args, "checkpoint", None) and len(names) != 1:
        raise SynthdataError("--checkpoint needs exactly one --generator")
    if args.command == "release":
        print(json.dumps(_stage("release").run(params, remote=args.remote)))
        return
    stage, module = args.command, _stage(args.command)
    if stage not in PER_GENERATOR:
        _say(module.run(params))
    for name in names if stage in PER_GENERATOR else ():
        if stage == "train":
            _say(module.run(params, name, resume=not args.no_resume))
        elif stage == "sample":
            _say(module.run(params, name, checkpoint=args.checkpoint))
        else:
            _say(module.run(params, name))


def _say(summary: dict) -> None:
    """Print a stage's summary (once: under torchrun only rank 0 speaks)."""
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(summary))


EXIT_CODES = ((RepoBusy, 75), (GateFailed, 3), (SynthdataError, 2))  # 75: EX_TEMPFAIL, worth retrying


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except SynthdataError as exc:
        print(f"synthdata {args.command}: error: {shorten(str(exc), 1000)}", file=sys.stderr)
        return next(code for kind, code in EXIT_CODES if isinstance(exc, kind))
    except OSError as exc:
        from synthdata.fsutil import is_disk_full

        if not is_disk_full(exc):
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(
            f"synthdata {args.command}: error: the disk is full{where}; nothing was replaced (the earlier outputs "
            "are as they were): free space and run again",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(
            f"synthdata {args.command}: interrupted; the last checkpoint is kept, run the same command to resume",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
