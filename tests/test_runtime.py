"""Provenance of results: which commit produced them, also from a copy of the tree without .git."""

import re
import subprocess

from pitrec.utils.runtime import git_sha


def test_git_sha_reads_the_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv("PITREC_GIT_SHA", raising=False)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f.txt").write_text("a\n")
    env = ["-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", *env, "-C", str(tmp_path), "add", "f.txt"], check=True)
    subprocess.run(["git", *env, "-C", str(tmp_path), "commit", "-q", "-m", "x"], check=True)
    sha = git_sha(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", sha)
    (tmp_path / "f.txt").write_text("b\n")
    assert git_sha(tmp_path) == sha + "-dirty"


def test_rewritten_results_files_do_not_make_the_checkout_dirty(tmp_path, monkeypatch):
    """Runs finishing beside a starting one rewrite benchmarks/results/; the code is still clean
    (also when asked from a subdirectory, as the package asks from its own)."""
    monkeypatch.delenv("PITREC_GIT_SHA", raising=False)
    results, src = tmp_path / "benchmarks" / "results", tmp_path / "src"
    results.mkdir(parents=True)
    src.mkdir()
    (results / "beauty.md").write_text("a\n")
    (src / "code.py").write_text("a\n")
    env = ["-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", *env, "-C", str(tmp_path), "add", "."], check=True)
    subprocess.run(["git", *env, "-C", str(tmp_path), "commit", "-q", "-m", "x"], check=True)
    sha = git_sha(src)
    (results / "beauty.md").write_text("b\n")
    assert git_sha(src) == git_sha(tmp_path) == sha
    (src / "code.py").write_text("b\n")
    assert git_sha(src) == git_sha(results) == sha + "-dirty"


def test_a_copy_without_git_says_unknown_unless_told(tmp_path, monkeypatch):
    monkeypatch.delenv("PITREC_GIT_SHA", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repository above it either
    assert git_sha(tmp_path) == "unknown"
    monkeypatch.setenv("PITREC_GIT_SHA", "0123abc")
    assert git_sha(tmp_path) == "0123abc"


def test_deterministic_algorithms_holds_for_the_block_and_restores_even_on_error():
    import pytest
    import torch

    from pitrec.utils.runtime import deterministic_algorithms

    assert not torch.are_deterministic_algorithms_enabled()
    with pytest.raises(KeyError):
        with deterministic_algorithms():
            assert torch.are_deterministic_algorithms_enabled()
            raise KeyError("x")
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_algorithms(enabled=False):
        assert not torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with deterministic_algorithms():
            assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_native_bfloat16_is_what_onednn_says_for_the_cpu_and_false_for_unknown_devices():
    import torch

    from pitrec.utils.runtime import native_bfloat16

    assert native_bfloat16("cpu") == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert native_bfloat16("meta") is False


def test_slow_bfloat16_warns_once_per_purpose_and_not_where_it_is_native(monkeypatch):
    import warnings

    import pytest

    import pitrec.utils.runtime as runtime

    monkeypatch.setattr(runtime, "_SLOW_BFLOAT16_WARNED", set())
    monkeypatch.setattr(runtime, "native_bfloat16", lambda device_type: False)
    with pytest.warns(RuntimeWarning, match="training .* no native bfloat16"):
        assert runtime.warn_if_slow_bfloat16("cpu", "training")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not runtime.warn_if_slow_bfloat16("cpu", "training")  # said once already
    with pytest.warns(RuntimeWarning, match="serving"):
        assert runtime.warn_if_slow_bfloat16("cpu", "serving")
    monkeypatch.setattr(runtime, "native_bfloat16", lambda device_type: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not runtime.warn_if_slow_bfloat16("cpu", "decoding")


def test_the_machine_summary_names_the_vector_units_that_decide_bfloat16_speed(monkeypatch):
    import pitrec.utils.runtime as runtime

    info = runtime.machine_info()
    assert info["native_bfloat16"] == runtime.native_bfloat16("cpu")
    assert f"({info['cpu_capability']}" in runtime.machine_summary()
    monkeypatch.setattr(runtime, "machine_info", lambda: dict(info, cpu_capability="AVX512", native_bfloat16=True))
    assert runtime.machine_summary().startswith(f"{info['processor']} (AVX512, bfloat16 units), ")
    monkeypatch.setattr(runtime, "machine_info", lambda: dict(info, cpu_capability="AVX2", native_bfloat16=False))
    assert runtime.machine_summary().startswith(f"{info['processor']} (AVX2), ")
