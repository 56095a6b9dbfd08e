"""``pitrec data stats`` / ``pitrec data synth`` through the real command line (typer's runner):
the published counts of the shared Amazon data, every supported format, drops that are
printed, and errors that name the file."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from pitrec.cli import app
from pitrec.data.readers.s3rec import read_s3rec
from pitrec.data.synthetic import generate

runner = CliRunner()


def stats(*args: str) -> str:
    result = runner.invoke(app, ["data", "stats", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.output


def counts(output: str) -> tuple[str, str, str]:
    found = tuple(re.search(rf"^{name}\s+([\d,]+)\s*$", output, re.M) for name in ("users", "items", "interactions"))
    assert all(found), output
    return tuple(m.group(1) for m in found)


@pytest.mark.requires_shared
@pytest.mark.parametrize("name, expected", [
    ("beauty", ("22,363", "12,101", "198,502")),
    ("sports", ("35,598", "18,357", "296,337")),
])
def test_shared_amazon_counts(shared_data, name, expected):
    out = stats(shared_data / name)
    assert counts(out) == expected
    assert "dropped" not in out  # the 5-core files load whole


EXPECTED = ("3", "4", "7")  # users a, b, c; items 1, 2, 3, 9; 7 rows (one exact duplicate kept)
ROWS = [("a", 1, 10), ("a", 2, 11), ("a", 3, 12), ("b", 1, 5), ("b", 1, 5), ("b", 9, 6), ("c", 2, 1)]


def test_recbole_csv_and_parquet_files(tmp_path):
    rb = tmp_path / "rb"
    rb.mkdir()
    (rb / "rb.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                 + "".join(f"{u}\t{i}\t1\t{t}\n" for u, i, t in ROWS))
    frame = pd.DataFrame(ROWS, columns=["uid", "iid", "ts"])
    frame.to_csv(tmp_path / "log.csv", index=False)
    frame.to_parquet(tmp_path / "log.parquet")
    assert counts(stats(rb)) == EXPECTED
    for path in (tmp_path / "log.csv", tmp_path / "log.parquet"):
        out = stats(path, "--data.user_col=uid", "--data.item_col=iid", "--data.time_col=ts")
        assert counts(out) == EXPECTED


def test_kcore_drops_are_printed(tmp_path):
    pd.DataFrame(ROWS, columns=["user_id", "item_id", "timestamp"]).to_csv(tmp_path / "log.csv", index=False)
    out = stats(tmp_path / "log.csv", "--kcore-users", "2", "--kcore-items", "2")
    # items 3, 9 (once each) go -> c is too short, then item 2 has one user left -> a goes too
    assert counts(out) == ("1", "1", "2")
    for reason, n in (("kcore_users", 2), ("kcore_items", 3), ("kcore_interactions", 5)):
        assert re.search(rf"dropped {reason}: {n}$", out, re.M), out


def test_bad_input_exits_with_the_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("user_id,item_id,timestamp\n1,2,3\n1,,4\n")
    result = runner.invoke(app, ["data", "stats", str(path)])
    assert result.exit_code == 2
    assert "bad.csv:3" in result.output.replace("\n", "") and "missing item id" in result.output


def test_synth_round_trips_through_the_s3rec_reader(tmp_path):
    out = tmp_path / "syn"
    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--users", "40", "--items", "30",
                                 "--clusters", "3", "--seed", "5"])
    assert result.exit_code == 0, result.output
    back, original = read_s3rec(out), generate(n_users=40, n_items=30, n_clusters=3, seed=5)
    assert back.user_ids == original.user_ids and back.item_ids == original.item_ids
    assert [s.tolist() for s in back.sequences] == [s.tolist() for s in original.sequences]
    assert back.item_text == original.item_text
    assert counts(stats(out)) == (f"{original.n_users:,}", f"{original.n_items:,}", f"{original.n_interactions:,}")
