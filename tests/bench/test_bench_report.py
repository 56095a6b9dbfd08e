"""Markdown report, README block and plots, from hand-made results and run logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pitrec.bench.plots import level_entropy, make_plots
from pitrec.bench.report import README_BEGIN, README_END, markdown, update_readme, write_report
from pitrec.bench.results import build_results, write_results
from pitrec.bench.spec import BenchError

PROTOCOL = {"split": "leave-one-out", "ranking": "full", "max_history": 20, "ks": [5, 10, 20], "mask_history": False}
PROVENANCE = {"git_sha": "abc123def456789", "machine": "test machine", "command": "pitrec bench main.yaml --seeds=[0]"}


def _fake_run_dir(root: Path, name: str, curve: list[float], churn: list[float] | None = None,
                  entropy: list[float] | None = None, stats: dict | None = None) -> str:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    lines = []
    for epoch, value in enumerate(curve, 1):
        rec = {"epoch": epoch, "valid": {"ndcg@10": value}}
        if churn:
            rec["sid_churn"] = churn[epoch - 1]
        if entropy:
            rec["codebook_entropy"] = entropy
        lines.append(json.dumps(rec))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if stats is not None:
        (run_dir / "sid_stats.json").write_text(json.dumps(stats))
    return str(run_dir)


@pytest.fixture
def doc(make_run, tmp_path):
    runs = [make_run("popularity", seed=0, base=0.005, run_dir=str(tmp_path / "no-such-dir")),
            make_run("tiger", seed=0, base=0.03, wall_seconds=100.0,
                     run_dir=_fake_run_dir(tmp_path, "tiger0", [0.01, 0.02, 0.025], stats={"entropy": [7.1, 6.8, 5.2]})),
            make_run("tiger", seed=1, base=0.032, wall_seconds=110.0,
                     run_dir=_fake_run_dir(tmp_path, "tiger1", [0.012, 0.022],
                                           stats={"levels": [{"entropy": 7.0}, {"entropy": 6.6}, {"entropy": 5.0}]})),
            make_run("pit", seed=0, base=0.04,
                     run_dir=_fake_run_dir(tmp_path, "pit0", [0.02, 0.03, 0.035], churn=[0.5, 0.2, 0.05],
                                           entropy=[7.5, 7.3, 6.9]))]
    return build_results("beauty", PROTOCOL, runs, PROVENANCE)


def test_markdown_shows_the_numbers(doc):
    md = markdown(doc, [])
    tiger = doc["summary"]["tiger"]
    assert f"{tiger['ndcg@10']['mean']:.4f} ± {tiger['ndcg@10']['std']:.4f}" in md
    assert "0.0310 ± 0.0014" in md  # tiger recall@5: mean of 0.030 and 0.032, sample std 0.00141
    assert "| popularity | 1 |" in md and "| tiger | 2 |" in md
    assert "105.0 ± 7.1" in md  # wall seconds of tiger
    for fact in (PROVENANCE["git_sha"], PROVENANCE["machine"], PROVENANCE["command"], doc["created"]):
        assert fact in md
    for r in doc["runs"]:
        assert f"{r['metrics']['ndcg@10']:.4f}" in md


def test_plots_written_from_run_logs(doc, tmp_path):
    out = tmp_path / "results"
    plots = {p.name: p for p in make_plots(doc, out)}
    for name, file in [("training curves", "beauty_curves.png"), ("SID churn", "beauty_churn.png"),
                       ("codebook entropy", "beauty_entropy.png")]:
        assert plots[name].path == out / file
        assert (out / file).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "tiger" in plots["training curves"].note and "pit" in plots["training curves"].note
    assert "pit" in plots["SID churn"].note and "tiger" not in plots["SID churn"].note
    # tiger from sid_stats.json (two formats), pit from the last logged codebook_entropy
    assert "tiger" in plots["codebook entropy"].note and "pit" in plots["codebook entropy"].note


def test_plots_are_drawn_from_the_records_curves_once_the_run_directories_are_gone(doc, tmp_path):
    import shutil

    from pitrec.bench.plots import _run_logs, run_curves

    for run in doc["runs"]:
        curves = run_curves(run["run_dir"])
        if curves is not None:
            run["curves"] = curves
    assert "curves" not in doc["runs"][0]  # popularity: no run directory, nothing to keep
    pit = next(r for r in doc["runs"] if r["method"] == "pit")
    assert pit["curves"] == {"epoch": [1, 2, 3], "ndcg@10": [0.02, 0.03, 0.035], "sid_churn": [0.5, 0.2, 0.05],
                             "entropy": [7.5, 7.3, 6.9]}
    before = {r["run_dir"]: _run_logs(r) for r in doc["runs"]}
    for run in doc["runs"]:
        shutil.rmtree(run["run_dir"], ignore_errors=True)
    plots = {p.name: p for p in make_plots(doc, tmp_path / "out")}
    for name in ("training curves", "SID churn", "codebook entropy"):
        assert plots[name].path is not None, plots[name].note
    assert "tiger" in plots["training curves"].note and "pit" in plots["training curves"].note
    assert "pit" in plots["SID churn"].note and "tiger" not in plots["SID churn"].note
    assert "tiger" in plots["codebook entropy"].note and "pit" in plots["codebook entropy"].note
    # what the plots read is the same from the record as from the directory
    tiger0 = doc["runs"][1]
    after = _run_logs(tiger0)
    assert [(e["epoch"], e["valid"]["ndcg@10"]) for e in after["epochs"]] == \
        [(e["epoch"], e["valid"]["ndcg@10"]) for e in before[tiger0["run_dir"]]["epochs"]]
    assert after["sid_stats"] == {"entropy": [7.1, 6.8, 5.2]}


def test_missing_logs_skip_with_a_message(make_run, tmp_path):
    doc = build_results("sports", PROTOCOL, [make_run("popularity", run_dir=str(tmp_path / "gone"))], PROVENANCE)
    plots = make_plots(doc, tmp_path / "out")
    assert [p.path for p in plots] == [None, None, None]
    assert all("skipped" in p.note for p in plots)
    assert not list(tmp_path.rglob("*.png"))
    md = markdown(doc, plots)
    assert "skipped, no run logged it in metrics.jsonl" in md


def test_write_report_regenerates_md_from_json(doc, tmp_path):
    path = write_results(tmp_path / "results" / "beauty.json", doc)
    md_path, plots = write_report(path)
    assert md_path == tmp_path / "results" / "beauty.md"
    text = md_path.read_text()
    assert "# Benchmark results: beauty" in text and "![training curves](beauty_curves.png)" in text


def test_update_readme_replaces_only_the_block(doc, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nintro\n\n{README_BEGIN}\nold table\n{README_END}\n\nafter\n")
    update_readme(readme, [doc], "benchmarks/results")
    text = readme.read_text()
    assert text.startswith("# title\n\nintro\n\n") and text.endswith("\n\nafter\n")
    assert "old table" not in text
    assert f"{doc['summary']['pit']['ndcg@10']['mean']:.4f}" in text and "**beauty**" in text
    update_readme(readme, [doc], "benchmarks/results")  # idempotent
    assert readme.read_text() == text


def test_update_readme_without_markers_is_an_error(doc, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(BenchError, match="results:begin"):
        update_readme(readme, [doc], "benchmarks/results")
    assert readme.read_text() == "# no markers\n"


@pytest.mark.parametrize("stats, expected", [
    ({"entropy": [1, 2.5]}, [1.0, 2.5]),
    ({"levels": [{"entropy": 1.0, "usage": 0.5}, {"entropy": 2.0}]}, [1.0, 2.0]),
    ({"per_level": [{"entropy": 3.0}]}, [3.0]),
    ([{"entropy": 4.0}], [4.0]),
    ({"levels": [{"level": 0, "entropy_bits": 7.9}, {"level": 1, "entropy_bits": 6.5}]}, [7.9, 6.5]),  # SidTable.stats()
    ({"usage": [0.1]}, None),
    (None, None),
])
def test_level_entropy_formats(stats, expected):
    assert level_entropy(stats) == expected


def test_standalone_benchmark_records_replace_by_label_and_carry_provenance(tmp_path):
    from pitrec.bench.results import provenance, save_labelled_record

    path = tmp_path / "speed.json"
    render = lambda doc: "\n".join(f"{r['label']}={r['x']}" for r in doc["runs"])  # noqa: E731
    save_labelled_record(path, {"label": "a", "x": 1, **provenance(["bench.py", "--k", "a b"])}, render)
    save_labelled_record(path, {"label": "b", "x": 2}, render)
    doc = save_labelled_record(path, {"label": "a", "x": 3}, render)
    assert [(r["label"], r["x"]) for r in doc["runs"]] == [("b", 2), ("a", 3)]
    assert (tmp_path / "speed.md").read_text() == "b=2\na=3"
    first = provenance(["bench.py", "--k", "a b"])
    assert first["command"] == "python bench.py --k 'a b'" and first["git_sha"] and first["created"]


def test_time_to_accuracy_section_only_for_probed_runs(doc, make_run):
    assert "## Time to accuracy" not in markdown(doc, [])
    probe = {"accuracy_target": 0.0384, "accuracy_metric": "ndcg@10", "pipeline_seconds": 1210.5}
    runs = [make_run("pit", seed=0, base=0.03, time_to_accuracy_s=None, accuracy_epoch=None, probe_best=0.0291,
                     probe_best_seconds=1150.25, probe_best_epoch=7, **probe),
            make_run("pit", seed=1, base=0.04, time_to_accuracy_s=845.0, accuracy_epoch=5, probe_best=0.0401,
                     probe_best_seconds=845.0, probe_best_epoch=5, **probe),
            make_run("tiger", seed=0, base=0.03)]
    md = markdown(build_results("beauty", PROTOCOL, runs, PROVENANCE), [])
    table = md.split("## Time to accuracy", 1)[1]
    assert "| pit | full | 0 | ndcg@10 >= 0.0384 | not reached | 0.0291 (7, 1150.2) | 1210.5 |" in table
    assert "| pit | full | 1 | ndcg@10 >= 0.0384 | 845.0 | 0.0401 (5, 845.0) | 1210.5 |" in table
    assert "| tiger |" not in table  # not a speed run
    # the time is also summarised per method beside the other extras
    summary = build_results("beauty", PROTOCOL, runs, PROVENANCE)["summary"]["pit"]
    assert summary["time_to_accuracy_s"] == {"mean": 845.0, "std": 0.0, "n": 1}
