"""``synthdata`` command line: one sub-command per stage, each a thin caller of the stage's ``run``."""

from __future__ import annotations

import argparse
import json
import sys

from synthdata import generators
from synthdata.errors import GateFailed, SynthdataError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="synthdata", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def stage(name: str, help_: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help_)
        s.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
        return s

    stage("prepare", "load the data source and write the train/val/test split")
    stage("reference", "train the real-data baseline classifiers and the domain feature extractor")
    for name, help_ in (("train", "train generators"), ("sample", "sample synthetic + augmented datasets"),
                        ("evaluate", "score synthetic datasets (FID, KID, PRDC, downstream check) and gate them")):
        s = stage(name, help_)
        s.add_argument("--generator", choices=generators.generator_names(), action="append",
                       help="generator to use (repeatable; default: every one in params 'generators')")
    sub.choices["train"].add_argument("--no-resume", action="store_true",
                                      help="start over even if a matching checkpoint exists")
    sub.choices["sample"].add_argument("--checkpoint", help="checkpoint file or folder (default: paths.models/NAME)")
    stage("all", "prepare and reference, then train, sample and evaluate every generator")
    return p


def _run(args: argparse.Namespace) -> None:
    from synthdata import evaluate, prepare, reference, sample, train
    from synthdata.params import load_params

    params = load_params(args.params)
    names = getattr(args, "generator", None) or params.generators
    if getattr(args, "checkpoint", None) and len(names) != 1:
        raise SynthdataError("--checkpoint needs exactly one --generator")
    if args.command in ("prepare", "all"):
        print(json.dumps(prepare.run(params)))
    if args.command in ("train", "all"):
        for name in names:
            print(json.dumps(train.run(params, name, resume=not getattr(args, "no_resume", False))))
    if args.command in ("reference", "all"):
        print(json.dumps(reference.run(params)))
    if args.command in ("sample", "all"):
        for name in names:
            print(json.dumps(sample.run(params, name, checkpoint=getattr(args, "checkpoint", None))))
    if args.command in ("evaluate", "all"):
        failed = []
        for name in names:
            try:
                print(json.dumps(evaluate.run(params, name)))
            except GateFailed as exc:  # score every generator before stopping
                failed.append(str(exc))
        if failed:
            raise GateFailed(" | ".join(failed))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except SynthdataError as exc:
        print(f"synthdata {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"synthdata {args.command}: interrupted; the last checkpoint is kept, run the same command to "
              "resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
