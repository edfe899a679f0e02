"""Data-parallel training across processes (gloo on this CPU), and the DDP example under torchrun.

Two ranks are started once (torch.multiprocessing, spawn) and run tests/distributed_worker.py;
the reference is the same training in this process on the concatenated batch.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import distributed_worker as W
import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from event_writers import aedat31

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available in this torch build")


def _gesture_root(root: Path) -> Path:
    """A DVS128 Gesture folder (AEDAT 3.1 trials + label CSVs) with 4 trials of 6 gestures each."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    trials = []
    for k in range(4):
        n = 20_000
        t = np.sort(rng.integers(0, 6_000_000, n))
        events = list(zip(t.tolist(), rng.integers(0, 128, n).tolist(), rng.integers(0, 128, n).tolist(),
                          rng.integers(0, 2, n).tolist()))
        stem = f"user{k:02d}_led"
        (root / f"{stem}.aedat").write_bytes(aedat31(events))
        rows = "".join(f"{1 + (k + j) % 11},{j * 1_000_000},{j * 1_000_000 + 900_000}\n" for j in range(6))
        (root / f"{stem}_labels.csv").write_text("class,startTime_usec,endTime_usec\n" + rows)
        trials.append(f"{stem}.aedat")
    (root / "trials_to_train.txt").write_text("\n".join(trials) + "\n")
    return root


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Run the two gloo ranks once; returns (output folder, a pristine copy of the dataset root)."""
    base = tmp_path_factory.mktemp("ddp")
    data = _gesture_root(base / "gesture")
    pristine = base / "gesture-copy"
    shutil.copytree(data, pristine)
    out = base / "out"
    out.mkdir()
    mp.start_processes(W.worker, args=(2, str(base / "init"), str(out), str(data)), nprocs=2, join=True,
                       start_method="spawn")
    return out, pristine


def test_two_gloo_processes_match_one_process_on_the_concatenated_batch(two_ranks):
    out, _ = two_ranks
    rank0, rank1 = (dict(np.load(out / f"weights{r}.npz")) for r in (0, 1))
    reference = W.train(0, 1)
    initial = {k: v.detach().numpy() for k, v in W.make_model().state_dict().items()}
    worst = 0.0
    for name, ref in reference.items():
        np.testing.assert_array_equal(rank0[name], rank1[name])  # the ranks stay identical
        worst = max(worst, float(np.abs(rank0[name] - ref).max()))
        assert np.abs(ref - initial[name]).max() > 1e-3, f"{name} barely trained: the comparison would be empty"
    print(f"max |2-process DDP - 1-process| weight difference after {W.STEPS} steps: {worst:.3g}")
    assert worst <= 1e-6


def test_neuron_state_stays_per_process_and_reset_is_safe(two_ranks):
    out, _ = two_ranks
    for rank in (0, 1):
        state = json.loads((out / f"result{rank}.json").read_text())["state"]
        assert state == {"state_is_own": True, "states_differ_across_ranks": True, "reset_clears_state": True,
                         "grads_equal_across_ranks": True}, (rank, state)


def test_frame_cache_prepared_by_two_ranks_at_once(two_ranks):
    out, pristine = two_ranks
    from snnir.data.datasets import DVS128Gesture

    results = [json.loads((out / f"result{r}.json").read_text())["frames"] for r in (0, 1)]
    reference = DVS128Gesture(pristine, train=True, data_type="frame", frames_number=4, progress=False)
    expected = [float(reference[i][0].astype(np.float64).sum()) for i in range(len(reference))]
    assert len(reference) == 24
    for r in results:
        assert r["warnings"] == [] and r["n"] == 24
        assert r["checksums"] == expected and r["shapes"] == [[4, 2, 128, 128]] * 24
    assert sum(r["computed"] for r in results) >= 24  # between them they filled the cache
    data = out.parent / "gesture"
    leftovers = [p for p in data.rglob("*") if p.name.startswith(".")]
    assert leftovers == [], leftovers  # no temporary files or half-cut trial folders


def test_ddp_example_runs_under_torchrun(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "examples" / "train_ddp.py"), "--epochs", "2", "--save", str(tmp_path / "w.pt")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 processes (gloo" in done.stdout
    acc = float(re.search(r"test accuracy ([0-9.]+)%", done.stdout).group(1))
    assert acc > 80  # two epochs on digits (the full run: see README)
    assert (tmp_path / "w.pt").exists()
