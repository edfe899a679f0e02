"""examples/events_pipeline.py end to end: synthetic events -> frames -> padded batches -> a trained SNN."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_events_pipeline_example_tells_the_directions_apart(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "events_pipeline.py")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    accuracy = float(re.search(r"test accuracy ([0-9.]+)", out.stdout).group(1))
    assert accuracy >= 0.95
    lengths = re.search(r"frames per recording: (\d+)\.\.(\d+)", out.stdout)
    assert int(lengths.group(1)) < int(lengths.group(2))  # variable length: the padding path is exercised
    assert "frames (train)" in out.stderr  # the tqdm bar of the dataset preparation
