"""Which generator ``publish`` stages: only one that passed the gate; ``auto`` picks the best."""

from synthdata.params import Params
from synthdata.publish import choose


def _row(name, passed, acc, ratio):
    return {"generator": name, "passed": passed, "failed_checks": [] if passed else ["fid_ratio 9.000 (limit <= 8)"],
            "checkpoint_sha256": ["0" * 64], "scores": {"acc_synthetic": acc, "fid_ratio": ratio}}


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
