"""Which generator ``publish`` stages: only one that passed the gate; ``auto`` picks the best."""

from synthdata.params import Params
from synthdata.publish import choose


def _row(name, passed, acc, ratio):
    return {
        "generator": name,
        "passed": passed,
        "failed_checks": [] if passed else ["fid_ratio 9.000 (limit <= 8)"],
        "checkpoint_sha256": ["0" * 64],
        "scores": {"acc_synthetic": acc, "fid_ratio": ratio},
    }


def test_auto_picks_the_best_passing_generator():
    params = Params()
    rows = [_row("cgan", True, 0.90, 3.0), _row("cvae", True, 0.95, 5.0)]
    assert choose(params, rows)[0]["generator"] == "cvae"
    rows = [_row("cgan", True, 0.90, 3.0), _row("cvae", False, 0.99, 9.0)]  # a failed one never wins
    assert choose(params, rows)[0]["generator"] == "cgan"
    rows = [_row("cgan", True, 0.90, 3.0), _row("cvae", True, 0.90, 2.0)]  # tie: lower fid ratio
    assert choose(params, rows)[0]["generator"] == "cvae"


def test_nothing_is_chosen_when_no_generator_passed():
    row, reason = choose(Params(), [_row("cgan", False, 0.5, 9.0), _row("cvae", False, 0.5, 9.0)])
    assert row is None and "no generator passed" in reason and "cgan: fid_ratio" in reason


def test_a_named_generator_that_failed_is_not_published():
    params = Params.model_validate({"publish": {"generator": "cvae"}})
    row, reason = choose(params, [_row("cgan", True, 0.9, 3.0), _row("cvae", False, 0.99, 9.0)])
    assert row is None and "cvae (publish.generator) failed the gate" in reason


def test_link_tree_links_files_and_falls_back_to_copies(tmp_path, monkeypatch):
    from synthdata import fsutil

    src = tmp_path / "src"
    (src / "3").mkdir(parents=True)
    (src / "3" / "a.png").write_bytes(b"png")
    fsutil.link_tree(src, tmp_path / "linked")
    assert (tmp_path / "linked/3/a.png").stat().st_ino == (src / "3/a.png").stat().st_ino

    def no_links(a, b):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(fsutil.os, "link", no_links)
    fsutil.link_tree(src, tmp_path / "copied")
    copied = tmp_path / "copied/3/a.png"
    assert copied.read_bytes() == b"png" and copied.stat().st_ino != (src / "3/a.png").stat().st_ino
