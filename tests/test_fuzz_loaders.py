"""Every loader against mutated files: no raw exception, no hang, no crash, errors name the file.

The fuzzer (``tests/fuzzing.py``) runs each case in a forked child with an address-space limit.
CI runs a few dozen cases per loader (about half a minute in all); ``SNNIR_FUZZ_CASES=3000``
runs the long mode (or ``python tests/fuzzing.py --cases 3000``, which also prints the table).
HDF5 (NIR, netx, SHD) and .mat files are fuzzed in safe mode, as the CLI reads them: h5py and scipy.io can crash or
hang on corrupted bytes, which only a child process contains (the in-process variants are in the
long mode's table).
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import fuzzing  # noqa: E402

pytest.importorskip("h5py")
pytest.importorskip("nir")
pytest.importorskip("onnx")
pytest.importorskip("scipy")
if not hasattr(os, "fork"):
    pytest.skip("the fuzzer forks a process per batch of cases", allow_module_level=True)

LONG = int(os.environ.get("SNNIR_FUZZ_CASES", "0"))
# cases per target in CI: cheap parsers get more, the ones that compile accepted graphs or fork a
# safe-mode child per case fewer
CI_CASES = {"snnir.load": 80, "from_nir[safe]": 40, "from_onnx": 120, "SpikeHDF5[safe]": 40,
            "read_asl_dvs_mat[safe]": 40, "read_netx[safe]": 40}
IN_PROCESS_UPSTREAM = ("from_nir", "SpikeHDF5", "read_asl_dvs_mat", "read_netx")  # h5py/scipy.io in-process
TARGETS = [t for t in fuzzing.TARGETS if t not in IN_PROCESS_UPSTREAM] if not LONG else list(fuzzing.TARGETS)


@pytest.fixture(scope="module")
def reports():
    out = {}
    for name in TARGETS:
        cases = LONG or CI_CASES.get(name, 150)
        out.update(fuzzing.run([name], cases, seed=20240611, workers=2, timeout=60.0))
    return out


@pytest.mark.parametrize("target", TARGETS)
def test_loader_survives_mutated_files(reports, target):
    report = reports[target]
    cap = fuzzing.FUZZ_MAX_BYTES
    assert report.outcomes["refused"] > 0  # the mutations reached the loader's checks
    upstream = target in IN_PROCESS_UPSTREAM  # in-process h5py/scipy: long mode only
    failures = [e for e in report.escapes if not (upstream and e["outcome"] in ("hang", "crash"))]
    assert not failures, f"{target}: {report.line(cap)}\n" + "\n".join(
        f"case {e['case']} ({e['mutation']}): {e['outcome']} {e.get('error')}: {e.get('message', '')[:300]}"
        for e in failures[:10])
    assert report.refused_unnamed == 0, f"{target}: {report.refused_unnamed} errors do not name the file"
    if target != "from_onnx":  # an unsupported ONNX op is an UnsupportedOpError (a SnnirError, not a defect)
        assert not report.refused_not_format, f"{target}: refused with {dict(report.refused_not_format)}"
    if not upstream:  # no case made its process grow by more than the cap (limits.max_bytes)
        assert report.peak_extra_bytes <= cap, report.line(cap)
