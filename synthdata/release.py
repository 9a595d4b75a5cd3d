"""``synthdata release``: make the staged, gated dataset a version other teams can get.

Runs after ``dvc repro`` (DVC writes ``dvc.lock`` only when a stage has finished, so a version cannot be
cut from inside a stage). In order, each step only once the one before it has succeeded:

1. refuse unless ``publish`` staged a dataset that passed the gate, ``dvc status`` is clean, and no
   tracked file other than ``dvc.lock`` / ``params.yaml`` has uncommitted changes (the tag must rebuild it);
2. ``dvc push`` every output to the DVC remote (objects are content-addressed and a folder's listing is
   uploaded after its files, so an interrupted push exposes nothing);
3. add a row to ``published.csv`` and make a commit of it with ``dvc.lock`` and ``params.yaml`` (aside,
   in a temporary index: no branch moves), and the annotated tag object ``<publish.name>-v<N>``;
4. move the branch to that commit and create the tag in one git ref transaction: the version exists from
   this moment, and no commit on the branch ever names a version without its tag.

An interruption before step 4 leaves every earlier version as it was (and ``published.csv`` as it was),
and the next release does the whole thing again. Releasing a dataset identical to the latest version does nothing.

Consumers: ``dvc get <repo> data/published/dataset --rev <tag>`` (or ``dvc import``), then torchvision
``ImageFolder`` or ``pandas.read_parquet(".../metadata.parquet")``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
import subprocess
from pathlib import Path

from synthdata import locks
from synthdata.errors import GateFailed, RepoBusy, SynthdataError
from synthdata.fsutil import atomic_write_bytes
from synthdata.manifest import DATASET, read_manifest
from synthdata.metrics import registry
from synthdata.params import Params

TABLE = "published.csv"


def columns() -> list[str]:
    """published.csv's columns: the version's identity, the registered metric columns marked ``release``."""
    return (
        ["version", "released_at", "dataset_id", "generator", "images", "real_images", "synthetic_images"]
        + [c.key for c in registry.columns() if c.release]
        + ["path", "remote"]
    )


ALLOWED_DIRTY = {"dvc.lock", "params.yaml", TABLE}


def _git(root: Path, *args: str, check: bool = True, input: str | None = None, env: dict | None = None) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=root,
        capture_output=True,
        text=True,
        input=input,
        env=None if env is None else {**os.environ, **env},
    )
    if check and proc.returncode != 0:
        first = (proc.stderr or proc.stdout).strip().splitlines()
        raise SynthdataError(f"git {args[0]} failed: {first[-1] if first else proc.returncode}")
    return proc.stdout


def _dvc_error(exc: Exception, doing: str) -> SynthdataError:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "lock" in msg.lower():
        return RepoBusy(f"{doing}: the DVC repository is locked by another dvc process ({msg}); retry when it ends")
    return SynthdataError(f"{doing}: {msg}")


def read_table(root: Path) -> list[dict]:
    path = root / TABLE
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _table_bytes(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, columns(), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def versions(root: Path, name: str) -> list[int]:
    pat = re.compile(rf"^{re.escape(name)}-v(\d+)$")
    return sorted(int(m.group(1)) for t in _git(root, "tag", "--list", f"{name}-v*").split() if (m := pat.match(t)))


def _commit_aside(root: Path, head: str, paths: list[str], message: str) -> str:
    """A commit of ``head`` plus the working-tree ``paths``, made in a temporary index: no branch moves yet."""
    index = Path(_git(root, "rev-parse", "--git-path", f"synthdata-release-{os.getpid()}.index").strip())
    index = index if index.is_absolute() else root / index
    env = {"GIT_INDEX_FILE": str(index)}
    try:
        _git(root, "read-tree", head, env=env)
        _git(root, "add", "--", *paths, env=env)
        tree = _git(root, "write-tree", env=env).strip()
    finally:
        index.unlink(missing_ok=True)
    return _git(root, "commit-tree", tree, "-p", head, "-m", message).strip()


def _publish_refs(root: Path, branch: str, head: str, commit: str, version: str, message: str) -> None:
    """Move ``branch`` from ``head`` to ``commit`` and create the annotated tag ``version`` in one ref
    transaction: both happen or neither (nor if the branch moved meanwhile), so no commit on the branch lists
    a version that has no tag."""
    tagger = _git(root, "var", "GIT_COMMITTER_IDENT").strip()
    tag = _git(
        root, "mktag", input=f"object {commit}\ntype commit\ntag {version}\ntagger {tagger}\n\n{message}\n"
    ).strip()
    _git(
        root,
        "update-ref",
        "--stdin",
        input=f"start\nupdate {branch} {commit} {head}\ncreate refs/tags/{version} {tag}\nprepare\ncommit\n",
    )


def run(params: Params, remote: str | None = None) -> dict:
    root = Path(_git(Path.cwd(), "rev-parse", "--show-toplevel").strip())
    with locks.hold(writes=[root / TABLE], reads=[params.paths.published]):
        return _run(params, remote, root)


def _run(params: Params, remote: str | None, root: Path) -> dict:
    manifest = read_manifest(params)
    if not manifest["published"]:
        raise GateFailed(f"nothing to release: {manifest['reason']}")
    _check_clean(root)
    name, rows = params.publish.name, read_table(root)
    done = versions(root, name)
    for row in reversed(rows):
        if row["version"] in {f"{name}-v{n}" for n in done} and row["dataset_id"] == manifest["dataset_id"]:
            return {
                "version": row["version"],
                "released": False,
                "dataset_id": manifest["dataset_id"],
                "note": "identical to an existing version; nothing to do",
            }
    remote_name, pushed = _push(root, remote)
    version = f"{name}-v{(done[-1] if done else 0) + 1}"
    path = f"{Path(params.paths.published).as_posix()}/{DATASET}"
    _record(root, manifest, rows, version, path, remote_name)
    return {
        "version": version,
        "released": True,
        "dataset_id": manifest["dataset_id"],
        "pushed_files": pushed,
        "get": f"dvc get <this repo> {path} --rev {version}",
    }


def _check_clean(root: Path) -> None:
    """Refuse unless ``dvc status`` is clean and no tracked file but the allowed ones has uncommitted changes."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            stale = repo.status()
    except DvcException as exc:
        raise _dvc_error(exc, "dvc status") from None
    if stale:
        raise SynthdataError(
            f"the pipeline is not up to date (dvc status: {', '.join(sorted(stale)[:4])}); run 'dvc repro' first"
        )
    dirty = [line[3:] for line in _git(root, "status", "--porcelain", "--untracked-files=no").splitlines()]
    dirty = [p for p in dirty if p not in ALLOWED_DIRTY]
    if dirty:
        raise SynthdataError(
            f"uncommitted changes to {', '.join(dirty[:3])}: commit them first, so that the "
            "release tag rebuilds this dataset"
        )


def _push(root: Path, remote: str | None) -> tuple[str, int]:
    """``dvc push`` every output; returns (the remote's name, files pushed)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            remote_name = remote or repo.config["core"].get("remote")
            if not remote_name:
                raise SynthdataError("no DVC remote: add one with 'dvc remote add -d NAME URL' (see docs/pipeline.md)")
            return remote_name, repo.push(remote=remote_name)
    except (DvcException, OSError) as exc:
        raise _dvc_error(exc, f"dvc push to remote '{remote or 'default'}' failed; nothing was released") from None


def _record(root: Path, manifest: dict, rows: list[dict], version: str, path: str, remote_name: str) -> None:
    """The row of ``published.csv``, committed aside with dvc.lock and params.yaml, and the tag: the branch
    and the tag move together; on any failure the table is put back as it was."""
    s, keys = manifest["scores"], [c.key for c in registry.columns() if c.release]
    row = {
        "version": version,
        "released_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "dataset_id": manifest["dataset_id"],
        "generator": manifest["generator"],
        "images": manifest["images"],
        "real_images": manifest["real_images"],
        "synthetic_images": manifest["synthetic_images"],
        **{k: s.get(k) for k in keys},
        "path": path,
        "remote": remote_name,
    }
    table = root / TABLE
    before = table.read_bytes() if table.exists() else None
    files = [TABLE, "dvc.lock", "params.yaml"]
    message = "\n".join(
        [
            f"{version}: {manifest['generator']} augmented dataset",
            "",
            f"dataset_id: {manifest['dataset_id']}",
            f"path: {path}",
            *(f"{k}: {s.get(k)}" for k in keys),
        ]
    )
    try:
        atomic_write_bytes(table, _table_bytes([r for r in rows if r["version"] != version] + [row]))
        branch = _git(root, "symbolic-ref", "-q", "HEAD", check=False).strip()
        if not branch:
            raise SynthdataError("HEAD is detached: check out the branch to release on (git switch BRANCH)")
        head = _git(root, "rev-parse", "HEAD").strip()
        commit = _commit_aside(
            root,
            head,
            files,
            f"Release {version}: {manifest['generator']} augmented dataset "
            f"({manifest['images']} images, dataset id {manifest['dataset_id'][:12]})",
        )
        _publish_refs(root, branch, head, commit, version, message)
    except BaseException:
        if before is None:
            table.unlink(missing_ok=True)
        else:
            atomic_write_bytes(table, before)
        raise
    _git(root, "reset", "-q", "--", *files)  # the index follows the branch (the working tree already does)
