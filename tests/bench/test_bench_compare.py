"""`pitrec bench compare`: differences of seed means in pooled standard deviations, checked
against figures computed by hand."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from pitrec.bench.compare import compare, comparison_markdown, pooled_std
from pitrec.bench.results import build_results, write_results
from pitrec.bench.spec import BenchError
from pitrec.cli import app

PROTOCOL = {"split": "leave-one-out", "ranking": "full", "max_history": 20, "ks": [5, 10, 20], "mask_history": False}
PROVENANCE = {"git_sha": "abc123", "machine": "test machine", "command": "pitrec bench run x.yaml"}


def _run(make_run, method, variant, seed, ndcg10, machine="Intel Xeon"):
    run = make_run(method, variant=variant, seed=seed, base=0.01, machine=machine)
    run["metrics"]["ndcg@10"] = ndcg10
    return run


@pytest.fixture
def doc(make_run):
    runs = [_run(make_run, "tiger", "full", 0, 0.02), _run(make_run, "tiger", "full", 1, 0.03),
            _run(make_run, "pit", "full", 0, 0.05), _run(make_run, "pit", "full", 1, 0.06),
            _run(make_run, "pit", "full", 2, 0.07, machine="AMD EPYC"),
            _run(make_run, "pit", "close", 0, 0.026), _run(make_run, "pit", "close", 1, 0.031),
            _run(make_run, "pit", "behind", 0, 0.001), _run(make_run, "pit", "behind", 1, 0.002),
            _run(make_run, "pit", "one", 0, 0.9),
            _run(make_run, "popularity", "full", 0, 0.005), _run(make_run, "popularity", "full", 1, 0.005),
            _run(make_run, "popularity", "flat", 0, 0.004), _run(make_run, "popularity", "flat", 1, 0.004)]
    return build_results("beauty", PROTOCOL, runs, PROVENANCE)


def _ndcg10(comparison):
    return next(m for m in comparison.metrics if m.metric == "ndcg@10")


def test_hand_computed_difference_and_sd(doc):
    (comp,) = compare(doc, "tiger", ["pit"], ["ndcg@10"])
    m = _ndcg10(comp)
    # tiger .02, .03: mean .025, sd .0070711; pit .05, .06, .07: mean .06, sd .01
    # pooled sd = sqrt((1 * .00005 + 2 * .0001) / 3) = .0091287; z = .035 / .0091287 = 3.834
    assert m.reference["mean"] == pytest.approx(0.025) and m.candidate["mean"] == pytest.approx(0.06)
    assert m.diff == pytest.approx(0.035)
    assert m.pooled_std == pytest.approx(math.sqrt(0.00025 / 3))
    assert m.z == pytest.approx(3.8341, abs=1e-3)
    assert m.verdict == "ahead by more than 2 sd"


def test_verdicts_within_behind_and_too_few_seeds(doc):
    by_label = {c.candidate: _ndcg10(c) for c in compare(doc, "tiger", ["pit/close", "pit/behind", "pit/one"])}
    # close: .026, .031 (mean .0285, sd .0035355); pooled with tiger's .0070711: .0055902; z = .0035 / .0055902 = 0.626
    assert by_label["pit/close"].z == pytest.approx(0.6261, abs=1e-3)
    assert by_label["pit/close"].verdict == "within 2 sd"
    assert by_label["pit/behind"].z < -2 and by_label["pit/behind"].verdict == "behind by more than 2 sd"
    assert by_label["pit/one"].z is None and by_label["pit/one"].pooled_std is None
    assert by_label["pit/one"].verdict.startswith("too few seeds")


def test_threshold_moves_the_verdict(doc):
    (comp,) = compare(doc, "tiger", ["pit"], ["ndcg@10"], threshold=4.0)
    assert _ndcg10(comp).verdict == "within 4 sd"


def test_identical_seeds_have_no_spread_to_scale_by(doc):
    (comp,) = compare(doc, "popularity", ["popularity/flat"], ["ndcg@10"])
    m = _ndcg10(comp)
    assert m.pooled_std == 0.0 and m.z is None and m.verdict == "no spread: behind"


def test_machine_filter_keeps_only_matching_runs(doc):
    with pytest.raises(BenchError, match="no runs of \\['tiger'\\] on a machine matching 'amd'"):
        compare(doc, "tiger", ["pit"], machine="amd")
    (comp,) = compare(doc, "tiger", ["pit"], ["ndcg@10"], machine="xeon")
    m = _ndcg10(comp)
    assert m.candidate["n"] == 2 and m.candidate["mean"] == pytest.approx(0.055)


def test_defaults_every_other_label_and_every_protocol_metric(doc):
    comps = compare(doc, "tiger")
    assert {c.candidate for c in comps} == set(doc["summary"]) - {"tiger"}
    assert [m.metric for m in comps[0].metrics] == [f"{n}@{k}" for n in ("recall", "ndcg") for k in (5, 10, 20)]


def test_unknown_label_and_metric_are_named(doc):
    with pytest.raises(BenchError, match="no runs of \\['tigre'\\].*labels with runs"):
        compare(doc, "tigre")
    with pytest.raises(BenchError, match="metric 'ndcg@50' is missing"):
        compare(doc, "tiger", ["pit"], ["ndcg@50"])
    with pytest.raises(BenchError, match="threshold"):
        compare(doc, "tiger", ["pit"], threshold=0)


def test_markdown_lists_every_row(doc):
    md = comparison_markdown(doc, compare(doc, "tiger", ["pit", "pit/one"], ["ndcg@10", "recall@10"]), None, 2.0)
    assert md.startswith("# beauty: against tiger")
    assert "| pit | ndcg@10 | 0.0250 ± 0.0071 (2) | 0.0600 ± 0.0100 (3) | +0.0350 | +3.8 | ahead by more than 2 sd |" in md
    assert "| pit/one | ndcg@10 | 0.0250 ± 0.0071 (2) | 0.9000 (1 seed) | +0.8750 | - | too few seeds" in md
    assert md.count("\n| pit") == 4


def test_cli_prints_and_writes_the_table(doc, tmp_path):
    path = tmp_path / "beauty.json"
    write_results(path, doc)
    out = tmp_path / "cmp" / "beauty_vs_tiger.md"
    out.parent.mkdir()
    result = CliRunner().invoke(app, ["bench", "compare", str(path), "--reference", "tiger", "--candidate", "pit",
                                      "--metric", "ndcg@10", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "+3.8 | ahead by more than 2 sd" in result.output
    assert out.read_text() == comparison_markdown(doc, compare(doc, "tiger", ["pit"], ["ndcg@10"]), None, 2.0)
    bad = CliRunner().invoke(app, ["bench", "compare", str(path), "--reference", "sasrec"])
    assert bad.exit_code == 2 and "no runs of ['sasrec']" in bad.output
