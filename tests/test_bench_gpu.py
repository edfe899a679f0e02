"""The GPU check's CPU-side logic: bench_gpu.py's floor arithmetic and JSON (``--dry-run``), the
refusal without a GPU, and gpu_check.sh's shape (valid bash, nothing fetched from the network)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benchmarks" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_floor_bytes_by_hand():
    b = _bench()
    N = 1 << 20
    # forward: x read + spikes written over T steps, state read + written once
    assert b.floor_bytes(8, N, 4, "fwd") == (8 * N + 8 * N + N + N) * 4
    # backward adds x (or a saved tensor as large), grad_spikes read, grad_x written, grad_state in/out
    assert b.floor_bytes(32, N, 2, "fwd_bwd") == ((2 * 32 + 2) + (3 * 32 + 2)) * N * 2
    assert b.floor_ms(128, N, 4, "fwd", bandwidth_gbs=4000) == pytest.approx((258 * N * 4) / 4e12 * 1e3)
    with pytest.raises(ValueError, match="mode must be one of"):
        b.floor_bytes(8, N, 4, "bwd")


def test_dry_run_writes_the_floors(tmp_path, capsys):
    out = tmp_path / "sub" / "bench.json"
    report = _bench().main([str(out), "--dry-run", "--neurons", "4096", "--steps", "8", "32",
                            "--bandwidth-gbs", "2000"])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(report, default=str))
    assert data["bandwidth_gbs"] == 2000 and len(data["rows"]) == 2 * 2 * 2  # dtypes x steps x modes
    row = next(r for r in data["rows"] if (r["T"], r["dtype"], r["mode"]) == (32, "float16", "fwd_bwd"))
    assert row["floor_bytes"] == (66 + 98) * 4096 * 2
    assert row["floor_ms"] == pytest.approx(row["floor_bytes"] / 2e12 * 1e3)
    printed = capsys.readouterr().out
    assert "snnir/floor" in printed and f"wrote {out}" in printed


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_without_a_gpu_the_benchmark_says_so(tmp_path):
    with pytest.raises(SystemExit, match="no CUDA device"):
        _bench().main([str(tmp_path / "x.json")])


def test_gpu_check_script_is_valid_bash_and_offline():
    script = ROOT / "benchmarks" / "gpu_check.sh"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    installs = [line for line in text.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
    assert installs and all("--no-deps" in line and "--no-build-isolation" in line for line in installs)
    assert "bench_gpu.py" in text and "tests/test_cupy_gpu.py" in text
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(script)], check=True)
