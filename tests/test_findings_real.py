"""Findings on real (tiny) training: no false root causes on a healthy paper run, the
question's failure found on the as-posted one."""

import pytest

from diagnose.findings import check_run
from diagnose.memn2n.train import train

pytestmark = pytest.mark.slow  # trains two 600-step runs


@pytest.fixture(scope="module")
def runs(run_config, small_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("real")
    common = dict(steps=600, log_every=50, eval_every=300, probe_every=300, eval_max_windows=2048)
    sizes = {"memory_size": 16, "embed_dim": 32, "hops": 3, "batch_size": 64}
    train(run_config("paper", model=sizes, **common), out / "paper", corpus=small_corpus)
    train(run_config("as-posted", model={**sizes, "hops": 2}, **common), out / "as-posted", corpus=small_corpus)
    return out


def test_no_root_cause_on_a_healthy_paper_run(runs):
    findings = check_run(runs / "paper")
    assert [f.id for f in findings if f.kind == "root-cause"] == []


def test_the_as_posted_run_gets_the_questions_root_causes(runs):
    ids = {f.id: f for f in check_run(runs / "as-posted")}
    assert ids["relu-output-crossentropy"].kind == "root-cause"
    assert ids["linear-on-attention-scores"].kind == "root-cause"
    assert "ignores-input" in ids or "plateau" in ids
