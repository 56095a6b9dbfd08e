"""``pitrec recommend``: top-k for every user of an interaction file, written to a file. Each
user's rows must be what the service answers for that user's chronological history."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pitrec.cli import app
from pitrec.serve.offline import iter_output, recommend_file
from pitrec.serve.recommender import Recommender
from pitrec.data.readers import load_interactions
from pitrec.config_sections import DataConfig


def _interactions(rec: Recommender, n_users: int = 7, seed: int = 0) -> pd.DataFrame:
    """Users with 2-8 known items each, rows shuffled (timestamps give the order)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rec.catalog.ids
    rows = []
    for u in range(n_users):
        items = rng.choice(len(ids), size=int(rng.integers(2, 9)), replace=False)
        rows += [(f"u{u}", ids[i], 1000 + 10 * t) for t, i in enumerate(items)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    frame["item_id"] = frame["item_id"].astype(object)  # tests append text ids the run does not know
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _expected(rec: Recommender, frame: pd.DataFrame, k: int, exclude: bool = False) -> dict[str, list]:
    out = {}
    for user, rows in frame.sort_values("timestamp", kind="stable").groupby("user_id", sort=False):
        answer = rec.recommend(rows["item_id"].tolist(), k, exclude_history=exclude, explain=False)
        out[user] = [(str(item.id), item.score) for item in answer.items]
    return out


def _read(path: Path) -> dict[str, list]:
    got: dict[str, list] = {}
    for row in iter_output(path):
        got.setdefault(str(row["user_id"]), []).append((row["rank"], str(row["item_id"]), row["score"]))
    for user, rows in got.items():
        assert [r[0] for r in rows] == list(range(1, len(rows) + 1)), f"ranks of {user} are not 1..k in order"
        got[user] = [(item, score) for _, item, score in rows]
    return got


def _same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for user in want:
        assert [i for i, _ in got[user]] == [i for i, _ in want[user]], user
        assert [s for _, s in got[user]] == pytest.approx([s for _, s in want[user]], rel=1e-5, abs=1e-6)


def _invoke(*args: str):
    return CliRunner().invoke(app, ["recommend", *map(str, args)])


@pytest.mark.parametrize("method,suffix", [("pit", ".parquet"), ("tiger", ".csv"), ("sasrec", ".jsonl"),
                                           ("popularity", ".tsv")])
def test_every_users_rows_are_the_services_answer(trained_runs, tmp_path, method, suffix):
    run = trained_runs(method)
    rec = Recommender.load(run, persist=False)
    frame = _interactions(rec)
    src = _csv(frame, tmp_path)
    out = tmp_path / f"recs{suffix}"
    result = _invoke(run, "--input", src, "--out", out, "--k", "5")
    assert result.exit_code == 0, result.output
    assert "top-5 of 7 users (35 rows)" in result.output
    _same(_read(out), _expected(rec, frame, 5))
    assert not Path(str(out) + ".skipped.txt").exists()


def test_decoding_option_serves_another_decoding_setting_and_refuses_training_keys(trained_runs, tmp_path):
    run = trained_runs("pit")
    rec = Recommender.load(run, persist=False, decoding=["pit.one_to_many=false"])
    frame = _interactions(rec)
    src, out = _csv(frame, tmp_path), tmp_path / "recs.csv"
    result = _invoke(run, "--input", src, "--out", out, "--k", "5", "--decoding", "pit.one_to_many=false")
    assert result.exit_code == 0, result.output
    _same(_read(out), _expected(rec, frame, 5))
    result = _invoke(run, "--input", src, "--out", out, "--decoding", "pit.max_sids_per_item=1")
    assert result.exit_code == 2 and "pit.max_sids_per_item does not apply" in " ".join(result.output.split())


def test_batches_exclusion_and_explanations(trained_runs, tmp_path):
    run = trained_runs("pit")
    rec = Recommender.load(run, persist=False)
    frame = _interactions(rec, n_users=9, seed=1)
    data = _load(frame, tmp_path)
    one = recommend_file(rec, data, tmp_path / "a.parquet", k=4, batch_size=2)
    assert (one.users, one.answered, one.rows, one.skipped_users) == (9, 9, 36, [])
    recommend_file(rec, data, tmp_path / "b.parquet", k=4, batch_size=256)
    _same(_read(tmp_path / "a.parquet"), _read(tmp_path / "b.parquet"))  # batch size moves only float rounding
    recommend_file(rec, data, tmp_path / "x.jsonl", k=4, exclude_history=True, explain=True)
    _same(_read(tmp_path / "x.jsonl"), _expected(rec, frame, 4, exclude=True))
    # as in evaluation and serving, the history is the last data.max_history items, and those are excluded
    last = rec.max_history
    history = (frame.sort_values("timestamp").groupby("user_id")["item_id"]
               .apply(lambda s: set(map(str, s.iloc[-last:]))).to_dict())
    assert max(frame.groupby("user_id").size()) > last  # so the test tells the two readings apart
    rows = list(iter_output(tmp_path / "x.jsonl"))
    assert all(str(r["item_id"]) not in history[r["user_id"]] for r in rows)
    assert all(r["sids"] and all(len(s["sid"]) == len(rows[0]["sids"][0]["sid"]) for s in r["sids"]) for r in rows)


def _csv(frame: pd.DataFrame, tmp_path: Path) -> Path:
    src = tmp_path / "inter.csv"
    frame.to_csv(src, index=False)
    return src


def _load(frame: pd.DataFrame, tmp_path: Path):
    return load_interactions(DataConfig(path=str(_csv(frame, tmp_path))))


def test_unknown_items_stop_before_anything_is_written(trained_runs, tmp_path):
    run = trained_runs("tiger")
    rec = Recommender.load(run, persist=False)
    frame = _interactions(rec)
    frame.loc[len(frame)] = ("u3", "no-such-item", 5)
    src = _csv(frame, tmp_path)
    out = tmp_path / "recs.csv"
    result = _invoke(run, "--input", src, "--out", out)
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "no-such-item" in text and "'u3'" in text and "--ignore-unknown" in text and "inter.csv" in text
    assert not out.exists() and not list(tmp_path.glob(".recs.csv.*"))


def test_ignore_unknown_drops_them_and_lists_users_left_with_nothing(trained_runs, tmp_path):
    run = trained_runs("tiger")
    rec = Recommender.load(run, persist=False)
    frame = _interactions(rec)
    known = frame.copy()
    frame.loc[len(frame)] = ("u3", "no-such-item", 5)
    frame.loc[len(frame)] = ("lost", "no-such-item", 6)
    frame.loc[len(frame)] = ("lost", "gone-too", 7)
    src = _csv(frame, tmp_path)
    out = tmp_path / "recs.parquet"
    result = _invoke(run, "--input", src, "--out", out, "--ignore-unknown", "--k", "3")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "dropped 3 interactions with 2 unknown item ids" in text and "1 users had no known item" in text
    assert Path(str(out) + ".skipped.txt").read_text() == "lost\n"
    _same(_read(out), _expected(rec, known, 3))


def test_columns_are_named_by_data_options_and_other_options_are_refused(trained_runs, tmp_path):
    run = trained_runs("sasrec")
    rec = Recommender.load(run, persist=False)
    frame = _interactions(rec).rename(columns={"user_id": "who", "item_id": "what", "timestamp": "when"})
    src = tmp_path / "inter.parquet"
    frame.to_parquet(src)
    out = tmp_path / "recs.csv"
    missing = _invoke(run, "--input", src, "--out", out)
    assert missing.exit_code == 2 and "user_col" in " ".join(missing.output.split())
    ok = _invoke(run, "--input", src, "--out", out, "--data.user_col=who", "--data.item_col=what",
                 "--data.time_col=when")
    assert ok.exit_code == 0, ok.output
    renamed = frame.rename(columns={"who": "user_id", "what": "item_id", "when": "timestamp"})
    _same(_read(out), _expected(rec, renamed, 10))
    refused = _invoke(run, "--input", src, "--out", out, "--train.epochs=3")
    assert refused.exit_code == 2 and "--train.epochs=3" in refused.output
    bad_suffix = _invoke(run, "--input", src, "--out", tmp_path / "recs.xlsx")
    assert bad_suffix.exit_code == 2 and ".parquet" in bad_suffix.output


def test_a_services_state_dir_brings_the_items_it_added(trained_runs, tmp_path):
    """--state-dir answers from a service's state: an item added online is known there, and the
    trained run alone still refuses it."""
    run = trained_runs("pit")
    state = tmp_path / "serving"
    live = Recommender.load(run, state_dir=state)
    live.add_item("brand-new", title=live.catalog.texts[0])
    live.close()
    trained = Recommender.load(run, persist=False)
    frame = _interactions(trained)
    frame.loc[len(frame)] = ("u0", "brand-new", 99_999)
    src = _csv(frame, tmp_path)
    out = tmp_path / "recs.jsonl"
    refused = _invoke(run, "--input", src, "--out", out)
    assert refused.exit_code == 2 and "brand-new" in refused.output
    ok = _invoke(run, "--input", src, "--out", out, "--state-dir", state, "--k", "4")
    assert ok.exit_code == 0, ok.output
    assert f"index version {trained.version + 1}" in " ".join(ok.output.split())  # the added item's version
    _same(_read(out), _expected(Recommender.load(run, state_dir=state), frame, 4))


@pytest.mark.parametrize("asked,expected", [(None, False), (False, False), (True, True)])
def test_loading_applies_the_runs_malloc_setting_unless_told(trained_runs, monkeypatch, asked, expected):
    import pitrec.utils.runtime as runtime

    seen = []
    monkeypatch.setattr(runtime, "retain_freed_memory", seen.append)
    Recommender.load(trained_runs("tiger"), persist=False, retain_memory=asked)
    assert seen == [expected]  # the run's setting (the default, off) unless the caller says otherwise
