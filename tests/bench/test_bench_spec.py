"""Bench config validation: errors name the key; per-run keys cannot be overridden."""

from __future__ import annotations

import pytest

from pitrec.bench.spec import BenchError, load_bench, parse_bench_overrides


def test_valid_config_and_defaults(write_bench):
    bench = load_bench(write_bench(seeds=[0, 1, 2]))
    assert bench.seeds == [0, 1, 2]
    assert bench.datasets["tiny"].is_synthetic
    assert [m.label for m in bench.methods] == ["popularity", "sasrec"]
    assert bench.datasets["tiny"].data_section()["format"] == "synthetic"


def test_default_seeds_are_three(write_bench, tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("datasets: {beauty: ../data/beauty}\nmethods: [{method: popularity}]\n")
    bench = load_bench(path)
    assert bench.seeds == [0, 1, 2]
    assert bench.datasets["beauty"].path == "../data/beauty"  # string shorthand


def test_override_values_are_yaml():
    parsed = parse_bench_overrides(["methods=[{method: pit, variant: no-csa}]"])
    assert parsed == {"methods": [{"method": "pit", "variant": "no-csa"}]}


@pytest.mark.parametrize("change, key", [
    ({"methods": [{"method": "sasrec", "varient": "x"}]}, "methods.0.varient"),
    ({"methods": [{"method": "sasrec", "variant": "bad name"}]}, "methods.0.variant"),
    ({"methods": [{"method": "sasrec"}, {"method": "sasrec"}]}, "method/variant listed twice"),
    ({"methods": [{"method": "sasrec", "overrides": {"eval": {"ks": [10]}}}]}, "methods.0.overrides"),
    ({"overrides": {"run": {"seed": 3}}}, "overrides"),
    ({"seeds": []}, "seeds"),
    ({"seeds": [1, 1]}, "seeds"),
    ({"datasets": {"tiny": {"path": "synthetic", "data": {"max_history": 5}}}}, "datasets.tiny.data"),
    ({"datasets": {}}, "datasets"),
    ({"progres": True}, "progres"),
    ({"methods": [{"method": "sasrec", "datasets": ["beauty"]}]}, "methods.0.datasets (sasrec): ['beauty'] not in"),
    ({"methods": [{"method": "sasrec", "datasets": []}]}, "methods.0.datasets (sasrec) is empty"),
])
def test_errors_name_the_key(write_bench, change, key):
    with pytest.raises(BenchError, match="bench.yaml") as err:
        load_bench(write_bench(**change))
    assert key in str(err.value)


def test_command_line_overrides(write_bench):
    bench = load_bench(write_bench(), ["--seeds=[3,4]", "--overrides.train.max_minutes=2", "--progress=true"])
    assert bench.seeds == [3, 4]
    assert bench.overrides["train"] == {"max_minutes": 2}
    assert bench.overrides["run"] == {"num_threads": 1}  # merged, not replaced
    assert bench.progress is True


@pytest.mark.parametrize("bad", ["--seeds", "--=3", "--a.b=[1,"])
def test_bad_overrides(bad):
    with pytest.raises(BenchError, match="override"):
        parse_bench_overrides([bad])


def test_conflicting_overrides_name_the_key():
    with pytest.raises(BenchError, match="conflicts with an earlier override of 'overrides'"):
        parse_bench_overrides(["--overrides=1", "--overrides.train.lr=0.1"])


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        load_bench(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(BenchError, match="top level must be a mapping"):
        load_bench(bad)
