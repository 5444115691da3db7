"""Smoke test of ``tools/bench.py --quick``: the JSON schema and the bit-identity checks (no timing asserted)."""

import json

import pytest

ROW_KEYS = {"network", "batch", "backend", "best_s", "median_s", "repeats", "sample_steps_per_s", "load_before"}
ROW_KEYS |= {"speedup_vs_lava_fixed_pt", "gemm_fp32_fraction"}


@pytest.mark.lava
def test_quick_run_writes_the_schema_and_is_bit_identical(tmp_path):
    from tools import bench

    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--json", str(out), "--plot", str(tmp_path / "bench.png")]) == 0
    result = json.loads(out.read_text())
    for key in ("command", "date", "cores", "steps", "batches", "repeats", "lava_samples", "recording", "norse"):
        assert key in result, key
    assert isinstance(result["load_before"], float) and isinstance(result["load_after"], float)
    (net,) = result["networks"]
    assert net["name"] == "small" and net["gemm_shapes"] == [[1, 64, 128], [1, 128, 10]]
    backends = {row["backend"] for row in net["rows"]}
    assert {"cpu (fixed)", "float (ours)", "snntorch", "gemm fp32", "gemm int8", "lava fixed_pt"} <= backends
    assert {"lava floating_pt"} <= backends
    for row in net["rows"]:
        assert ROW_KEYS <= set(row) and row["best_s"] > 0 and row["best_s"] <= row["median_s"]
    lava = net["checks"]["lava"]
    assert lava["cpu_vs_lava_fixed_pt"] == {"samples": 2, "mismatches": [], "identical": True}
    assert lava["cpu_float_program_vs_lava_floating_pt"]["spikes_identical"]
    assert net["checks"]["batch 8"]["snntorch_vs_float_spikes"]["identical"]
    assert (tmp_path / "bench.png").stat().st_size > 0
