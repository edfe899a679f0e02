"""examples/events_pipeline.py end to end (a shorter run): synthetic events -> frames -> padded batches -> SNN."""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_events_pipeline_example_tells_the_directions_apart(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import events_pipeline
    finally:
        sys.path.pop(0)
    result = events_pipeline.run(n_train=200, n_test=200, epochs=4, cache_root=str(tmp_path))
    assert result["accuracy"] >= 0.95
    out, err = capsys.readouterr()
    low, high = (int(v) for v in out.split("frames per recording: ")[1].split(" ")[0].split(".."))
    assert low < high  # variable length: the padding and masking path is exercised
    assert "frames (train)" in err  # the tqdm bar of the dataset preparation
    files = sorted(tmp_path.rglob("*.npz"))
    assert len(files) == 400
    with np.load(files[0], allow_pickle=False) as data:
        assert data["frames"].shape[1:] == (2, 16, 16)
