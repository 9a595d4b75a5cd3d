"""Function lengths of the synthdata package (lines from ``def`` to the last line, nested functions counted
on their own too): median, p90, max, the longest five, and every stage's ``run``/``_run``. Prints one table.

    python benchmarks/function_lengths.py [--tree OTHER_CHECKOUT]
"""

from __future__ import annotations

import argparse
import ast
import statistics
from pathlib import Path

STAGES = ("prepare", "filter", "judge", "reference", "train", "sample", "evaluate", "publish", "report", "release")


def lengths(root: Path) -> dict[str, int]:
    out = {}
    for file in sorted((root / "synthdata").rglob("*.py")):
        mod = file.relative_to(root).with_suffix("").as_posix().replace("/", ".")
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out[f"{mod}.{node.name}:{node.lineno}"] = node.end_lineno - node.lineno + 1
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", default=str(Path(__file__).resolve().parents[1]), help="checkout to measure")
    args = p.parse_args()
    n = lengths(Path(args.tree))
    v = sorted(n.values())
    p90 = v[min(len(v) - 1, int(round(0.9 * (len(v) - 1))))]
    print(
        f"| functions | median | p90 | max |\n| --- | --- | --- | --- |\n"
        f"| {len(v)} | {statistics.median(v):g} | {p90} | {v[-1]} |\n"
    )
    print("| longest | lines |\n| --- | --- |")
    for name, k in sorted(n.items(), key=lambda kv: -kv[1])[:5]:
        print(f"| {name} | {k} |")
    runs = {
        name: k
        for name, k in n.items()
        if name.split(":")[0].rsplit(".", 1)[0].split(".")[-1] in STAGES
        and name.split(":")[0].rsplit(".", 1)[1] in ("run", "_run")
    }
    print("\n| stage run | lines |\n| --- | --- |")
    for name, k in sorted(runs.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {k} |")


if __name__ == "__main__":
    main()
