"""The loader fuzzer: mutated files into every loader, each case in its own forked process.

For each target (a loader and its seed files) case ``i`` is a deterministic mutation
(``random.Random(f"{seed}:{target}:{i}")``) of a seed: bytes, or the format's structure
(``fuzz_mutations``). A child process runs the loader on it under an address-space limit of its
own size plus ``2 * max_bytes + 1 GiB`` (``snnir.limits`` lowered to ``max_bytes=256 MiB`` for the
run), and reports one outcome:

- ``refused``: a ``snnir.SnnirError`` (``named`` when its message names the file);
- ``accepted``: the loader returned, and the result passed its check (a graph compiles and runs
  two steps; events have the right dtype);
- ``escaped``: any other exception from the loader (the bug this suite exists to find);
- ``broken``: accepted, then the check failed (a graph that loads but does not run);
- ``hang`` (no answer within the timeout) and ``crash`` (killed by a signal), seen by the parent.

The parent records each child's peak resident memory (``wait4``) above an idle child's.

CI runs a few hundred cases (``tests/test_fuzz_loaders.py``); the long mode is::

    python tests/fuzzing.py --cases 3000 [--targets from_nir snnir.load] [--out /tmp/fuzz]

which prints, per loader: cases, outcomes, escapes (must be 0), hangs, crashes, and peak memory
versus the cap, and keeps every failing input under ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import select
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fuzz_corpus as corpus  # noqa: E402
import fuzz_mutations as mut  # noqa: E402

FUZZ_MAX_BYTES = 256 << 20


# --- what a loaded result must do -------------------------------------------------------------------------
def runs(graph: Any) -> None:
    """A loaded graph compiles and runs two steps on zeros (what "accepted" promises)."""
    import torch

    import snnir

    torch.set_num_threads(1)
    module = snnir.compile(graph)
    xs = [torch.zeros(2, 1, *graph.node(i).shape) for i in graph.inputs]
    with torch.no_grad():
        module(*xs)


def event_array(result: Any) -> None:
    import numpy as np

    if not isinstance(result, np.ndarray) or result.dtype.names is None:
        raise TypeError(f"expected a structured event array, got {type(result).__name__}")


def _load_snnir(path: str) -> Any:
    import snnir

    return snnir.load(path)


def _from_nir(path: str, safe: bool = False) -> Any:
    from snnir.frontends.nir import from_nir

    return from_nir(path, safe=safe)


def _from_onnx(path: str) -> Any:
    from snnir.frontends.onnx import from_onnx

    return from_onnx(path)


def _shd(path: str, safe: bool = False) -> Any:
    import numpy as np

    from snnir.data.formats import SpikeHDF5

    data = SpikeHDF5(path, safe=safe)
    out = [data.events(i) for i in range(len(data))]
    data.close()
    return np.concatenate(out) if out else np.zeros(0, [("t", "<i8")])


def _netx(path: str, safe: bool = False) -> Any:
    """``snnir.backends.lava.read``'s two steps: the validated integer program, then its graph."""
    from snnir.backends.lava import program_to_graph, read_netx

    program = read_netx(path, safe=safe)
    return program, program_to_graph(program)


def netx_runs(result: Any) -> None:
    """An accepted netx file runs two steps in the bit-accurate simulator and, as a graph, in torch."""
    import numpy as np

    from snnir.backends.lava import LoihiSimulator

    program, graph = result
    LoihiSimulator(program).run(np.zeros((2, 1, *program.input_shape), np.float32))
    runs(graph)


def _reader(name: str, safe: bool = False) -> Callable[[str], Any]:
    def load(path: str) -> Any:
        from snnir.data import formats

        fn = getattr(formats, name)
        if name == "read_asl_dvs_mat":
            return fn(path, safe=safe)
        if name == "read_aedat2":
            t, a = fn(path)
            return formats.dvs128_pixel_events(a) if t.shape == a.shape else None
        return fn(path)
    return load


@dataclass
class Target:
    name: str
    seeds: Callable[[Path], list[Path]]
    load: Callable[[str], Any]
    check: Callable[[Any], None] | None = None
    structural: Callable[[random.Random, bytes], bytes] | None = None
    suffix: str = ".bin"


TARGETS = {t.name: t for t in [
    Target("snnir.load", corpus.seeds_snnir, _load_snnir, runs, mut.mutate_snnir, ".snnir"),
    Target("from_nir", corpus.seeds_nir, _from_nir, runs, mut.mutate_h5, ".nir"),
    Target("from_onnx", corpus.seeds_onnx, _from_onnx, runs, mut.mutate_onnx, ".onnx"),
    Target("read_npy_events", corpus.seeds_npy, _reader("read_npy_events"), event_array, mut.mutate_npy, ".npy"),
    Target("read_npz_events", corpus.seeds_npz, _reader("read_npz_events"), event_array, mut.mutate_npz, ".npz"),
    Target("read_es_imagenet", corpus.seeds_es_imagenet, _reader("read_es_imagenet"), event_array, mut.mutate_npz,
           ".npz"),
    Target("SpikeHDF5", corpus.seeds_shd, _shd, None, mut.mutate_h5, ".h5"),
    Target("read_gesture_labels", corpus.seeds_labels, _reader("read_gesture_labels"), None, mut.mutate_lines,
           ".csv"),
    Target("read_aedat2", corpus.seeds_aedat2, _reader("read_aedat2"), None, None, ".aedat"),
    Target("read_aedat31", corpus.seeds_aedat31, _reader("read_aedat31"), event_array, mut.mutate_aedat31,
           ".aedat"),
    Target("read_atis_bin", corpus.seeds_atis, _reader("read_atis_bin"), event_array, None, ".bin"),
    Target("read_atis_td_dat", corpus.seeds_td, _reader("read_atis_td_dat"), event_array, None, ".dat"),
    Target("read_netx", corpus.seeds_netx, _netx, netx_runs, mut.mutate_netx, ".net"),
    Target("read_asl_dvs_mat", corpus.seeds_mat, _reader("read_asl_dvs_mat"), event_array, mut.mutate_mat, ".mat"),
    # safe mode (the CLI's default for HDF5 and .mat): upstream crashes and hangs become FormatError
    Target("from_nir[safe]", corpus.seeds_nir, lambda p: _from_nir(p, True), runs, mut.mutate_h5, ".nir"),
    Target("read_netx[safe]", corpus.seeds_netx, lambda p: _netx(p, True), netx_runs, mut.mutate_netx, ".net"),
    Target("SpikeHDF5[safe]", corpus.seeds_shd, lambda p: _shd(p, True), None, mut.mutate_h5, ".h5"),
    Target("read_asl_dvs_mat[safe]", corpus.seeds_mat, _reader("read_asl_dvs_mat", True), event_array,
           mut.mutate_mat, ".mat"),
]}
SAFE_TIMEOUT = 5.0  # seconds a safe-mode parse may take in the fuzzer (a hang costs this, not the case timeout)


def make_case(target: Target, seeds: list[bytes], seed: int, i: int) -> tuple[bytes, str]:
    """The bytes of case ``i`` and a short description of its mutation."""
    rng = random.Random(f"{seed}:{target.name}:{i}")
    k = rng.randrange(len(seeds))
    base = seeds[k]
    if target.structural is not None and rng.random() < 0.6:
        try:
            return target.structural(rng, base), f"seed {k}, structural"
        except Exception as e:  # noqa: BLE001 - a mutator that cannot apply falls back to bytes
            return mut.mutate_bytes(rng, base, seeds), f"seed {k}, bytes ({type(e).__name__} in mutator)"
    return mut.mutate_bytes(rng, base, seeds), f"seed {k}, bytes"


# --- one case in a child -----------------------------------------------------------------------------------
def _vm_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _outcome(target: Target, path: str) -> dict[str, Any]:
    from snnir.errors import FormatError, SnnirError
    from snnir.isolation import IsolatedParseError

    try:
        result = target.load(path)
    except IsolatedParseError as e:
        return {"outcome": "escaped", "error": e.raised, "message": str(e)[:400]}
    except SnnirError as e:
        text = str(e)
        named = path in text or os.path.basename(path) in text
        return {"outcome": "refused", "error": type(e).__name__, "format_error": isinstance(e, FormatError),
                "named": named, "message": text[:400]}
    except BaseException as e:  # noqa: BLE001 - what the fuzzer looks for
        return {"outcome": "escaped", "error": type(e).__name__, "message": str(e)[:400]}
    if target.check is not None:
        try:
            target.check(result)
        except BaseException as e:  # noqa: BLE001
            return {"outcome": "broken", "error": type(e).__name__, "message": str(e)[:400]}
    return {"outcome": "accepted"}


def _outcome_with_peak(target: Target, path: str) -> dict[str, Any]:
    from snnir import isolation

    isolation.last_peak_bytes = 0
    out = _outcome(target, path)
    return {**out, "isolated_peak": isolation.last_peak_bytes}


def _child(write_fd: int, target: Target, seeds: list[bytes], seed: int, cases: range, workdir: Path,
           max_bytes: int) -> None:
    """Run ``cases`` one after the other, writing one JSON line per finished case."""
    code = 0
    try:
        import faulthandler

        faulthandler.disable()
        for sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE):
            signal.signal(sig, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + 2 * max_bytes + (1 << 30), resource.RLIM_INFINITY))
        from snnir import limits

        for i in cases:
            data, how = make_case(target, seeds, seed, i)
            path = str(workdir / f"{target.name}-{i}{target.suffix}")
            Path(path).write_bytes(data)
            with limits.override(max_bytes=max_bytes, safe=False, timeout=SAFE_TIMEOUT):
                out = _outcome_with_peak(target, path)
            os.unlink(path)
            line = json.dumps({"case": i, "mutation": how, **out}).encode()[:60000] + b"\n"
            while line:
                line = line[os.write(write_fd, line):]
    except BaseException:  # noqa: BLE001
        code = 3
    finally:
        os._exit(code)


@dataclass
class Report:
    target: str
    cases: int = 0
    outcomes: Counter = field(default_factory=Counter)
    refused_unnamed: int = 0
    refused_not_format: Counter = field(default_factory=Counter)
    escapes: list = field(default_factory=list)
    peak_extra_bytes: int = 0
    peak_cases: range = range(0)
    seconds: float = 0.0

    def add(self, out: dict[str, Any], baseline: int = 0) -> None:
        self.outcomes[out["outcome"]] += 1
        if out.get("isolated_peak", 0) - baseline > self.peak_extra_bytes:  # a safe-mode parse's own process
            self.peak_extra_bytes = out["isolated_peak"] - baseline
            self.peak_cases = range(out["case"], out["case"] + 1)
        if out["outcome"] == "refused":
            self.refused_unnamed += not out["named"]
            if not out["format_error"]:
                self.refused_not_format[out["error"]] += 1
        if out["outcome"] in ("escaped", "broken", "hang", "crash"):
            self.escapes.append(out)

    def line(self, cap: int) -> str:
        o = self.outcomes
        return (f"{self.target:20s} {self.cases:6d} cases | refused {o['refused']:6d} accepted {o['accepted']:5d} | "
                f"escaped {o['escaped']:3d} broken {o['broken']:3d} hang {o['hang']:2d} crash {o['crash']:2d} | "
                f"unnamed {self.refused_unnamed:3d} | peak +{self.peak_extra_bytes / 2**20:7.1f} MiB "
                f"(cap {cap / 2**20:.0f}) | {self.seconds:6.1f} s")


def run(targets: list[str], cases: int, seed: int = 0, workers: int = 2, timeout: float = 30.0,
        out_dir: str | None = None, max_bytes: int = FUZZ_MAX_BYTES, progress: bool = False,
        batch: int = 25) -> dict[str, Report]:
    """Fuzz each target with ``cases`` cases; returns a Report per target (see the module docs).

    Each child process runs up to ``batch`` cases in a row (a crash or hang ends its batch; the
    parent records that case and resumes after it), ``workers`` children at a time.
    """
    workdir = Path(tempfile.mkdtemp(prefix="snnir-fuzz-"))
    seeds = corpus.write_seeds(workdir / "seeds", {n: TARGETS[n].seeds for n in targets})
    for name in targets:  # imports and compiled kernels are in place before the first fork
        with contextlib.suppress(Exception):
            result = TARGETS[name].load(str(next((workdir / "seeds" / name).iterdir())))
            if TARGETS[name].check is not None:
                TARGETS[name].check(result)
    baseline = _idle_peak()
    reports = {}
    for name in targets:
        target, report = TARGETS[name], Report(name, cases)
        start = time.perf_counter()
        todo = [range(a, min(a + batch, cases)) for a in range(0, cases, batch)]
        running: dict[int, dict[str, Any]] = {}
        while todo or running:
            while todo and len(running) < workers:
                chunk = todo.pop(0)
                read_fd, write_fd = os.pipe()
                pid = os.fork()
                if pid == 0:  # pragma: no cover
                    os.close(read_fd)
                    _child(write_fd, target, seeds[name], seed, chunk, workdir, max_bytes)
                os.close(write_fd)
                running[pid] = {"fd": read_fd, "cases": chunk, "next": chunk.start, "buf": b"",
                                "deadline": time.monotonic() + timeout}
            _collect(running, todo, report, baseline, timeout)
        report.seconds = time.perf_counter() - start
        reports[name] = report
        if out_dir:
            _keep(report, target, seeds[name], seed, out_dir)
        if progress:
            print(report.line(max_bytes), flush=True)
    return reports


def _collect(running: dict, todo: list, report: Report, baseline: int, timeout: float) -> None:
    fds = {v["fd"]: pid for pid, v in running.items()}
    ready, _, _ = select.select(list(fds), [], [], 0.5)
    now = time.monotonic()
    for pid, job in list(running.items()):
        eof = False
        if job["fd"] in ready:
            chunk = os.read(job["fd"], 1 << 16)
            eof = not chunk
            job["buf"] += chunk
            *lines, job["buf"] = job["buf"].split(b"\n")
            for line in lines:
                out = json.loads(line)
                report.add(out, baseline)
                job["next"] = out["case"] + 1
                job["deadline"] = now + timeout
        if not eof and now < job["deadline"]:
            continue
        if not eof:
            os.kill(pid, signal.SIGKILL)
        os.close(job["fd"])
        _, status, usage = os.wait4(pid, 0)
        del running[pid]
        if usage.ru_maxrss * 1024 - baseline > report.peak_extra_bytes:
            report.peak_extra_bytes, report.peak_cases = usage.ru_maxrss * 1024 - baseline, job["cases"]
        if job["next"] < job["cases"].stop:  # the batch ended early: this case hung or crashed
            if not eof:
                kind = {"outcome": "hang"}
            elif os.WIFSIGNALED(status):
                kind = {"outcome": "crash", "error": signal.Signals(os.WTERMSIG(status)).name}
            else:
                kind = {"outcome": "escaped", "error": "child exited", "message": f"status {status}"}
            report.add({"case": job["next"], "mutation": "?", **kind})
            job["next"] += 1
            if job["next"] < job["cases"].stop:
                todo.insert(0, range(job["next"], job["cases"].stop))


def _keep(report: Report, target: Target, seeds: list[bytes], seed: int, out_dir: str) -> None:
    """Write every failing case's input to ``out_dir`` (regenerated: cases are deterministic)."""
    os.makedirs(out_dir, exist_ok=True)
    for e in report.escapes:
        data, how = make_case(target, seeds, seed, e["case"])
        e["mutation"] = how
        Path(out_dir, f"{target.name}-{e['case']}-{e['outcome']}{target.suffix}").write_bytes(data)


def _idle_peak() -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        os._exit(0)
    _, _, usage = os.wait4(pid, 0)
    return usage.ru_maxrss * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fuzz snnir's loaders (see tests/fuzzing.py)")
    parser.add_argument("--cases", type=int, default=200, help="cases per loader")
    parser.add_argument("--targets", nargs="*", default=sorted(TARGETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--out", default=None, help="keep failing inputs here")
    parser.add_argument("--batch", type=int, default=25, help="cases per child process (1: per-case memory)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    reports = run(args.targets, args.cases, args.seed, args.workers, args.timeout, args.out, progress=True,
                  batch=args.batch)
    bad = 0
    for r in reports.values():
        for e in r.escapes[:10]:
            print(f"  {r.target} case {e['case']} ({e['mutation']}): {e['outcome']} {e.get('error')}: "
                  f"{e.get('message', '')[:300]}")
        print(f"  {r.target}: peak memory in cases {r.peak_cases.start}..{r.peak_cases.stop - 1}")
        if r.refused_not_format:
            print(f"  {r.target}: refused with other snnir errors: {dict(r.refused_not_format)}")
        bad += len(r.escapes)
    total = sum(r.cases for r in reports.values())
    print(f"total {total} cases, {bad} escaped/broken/hung/crashed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
