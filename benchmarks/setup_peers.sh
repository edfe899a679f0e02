#!/usr/bin/env bash
# Install the peer frameworks into the current environment with torch kept at 2.13.0.
# Each peer is installed --no-deps (SpikingJelly and Norse would pull torchvision, i.e. a new
# CUDA torch); their light runtime dependencies are installed explicitly.
set -euo pipefail
python -c "import torch, sys; v = torch.__version__.split('+')[0]; sys.exit(0 if v == '2.13.0' else 'install torch==2.13.0 first (found ' + v + ')')"
pip install --no-deps spikingjelly==2.0.0 snntorch==1.0.0 norse==1.1.0 sinabs==3.1.3 nir==1.0.8 nirtorch==2.6
pip install loguru scipy matplotlib tqdm pbr h5py packaging requests pandas
python - <<'PY'
import importlib, torch
for name in ("spikingjelly.activation_based.neuron", "snntorch", "norse.torch", "sinabs.layers"):
    try:
        importlib.import_module(name)
        print(f"ok       {name}")
    except Exception as e:  # a peer that cannot import is skipped by the benchmark
        print(f"SKIPPED  {name}: {type(e).__name__}: {e}")
assert torch.__version__.split("+")[0] == "2.13.0", f"torch changed to {torch.__version__}"
print("torch", torch.__version__)
PY
