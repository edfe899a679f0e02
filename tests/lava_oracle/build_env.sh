#!/usr/bin/env bash
# Build a separate virtual environment with real Lava (lava-nc 0.10 + lava-dl 0.6) on Python 3.11, the
# oracle that tests/test_lava_oracle.py runs exported netx files in. Lava is never a dependency of snnir:
# both packages declare Python < 3.11, so they are installed --no-deps --ignore-requires-python and the three
# small edits of ../shared/reference/lava-nc.md are applied to the installed copy by patch_lava.py.
#
#   tests/lava_oracle/build_env.sh [VENV]          (default: $SNNIR_LAVA_VENV or /tmp/snnir-lava-venv)
#   export SNNIR_LAVA_PYTHON=VENV/bin/python        (the tests run Lava only when this names a Python)
#
# About 2 minutes from PyPI; a second run reuses a venv that already imports Lava.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-${SNNIR_LAVA_VENV:-/tmp/snnir-lava-venv}}"
py="${PYTHON:-python3.11}"
check='import lava.lib.dl.netx, lava.lib.dl.slayer, lava.proc.lif.process, lava.proc.io'
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" 2>/dev/null; then
    echo "Lava oracle ready: $venv/bin/python"
    exit 0
fi
rm -rf "$venv"
"$py" -m venv "$venv"
pip="$venv/bin/python -m pip"
$pip install -q --upgrade pip
$pip install -q torch==2.13.0
$pip install -q numpy scipy networkx "asteval<0.10" scikit-learn h5py matplotlib opencv-python-headless tqdm safetensors
$pip install -q --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0
"$venv/bin/python" "$here/patch_lava.py"
"$venv/bin/python" -c "$check"
echo "Lava oracle ready: $venv/bin/python"
