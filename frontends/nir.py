"""NIR graphs (``nir`` package, HDF5 files) as snnir graphs, discretised by forward Euler.

NIR's neurons are continuous-time. With time step ``dt`` (default ``1e-4``, the convention of
the snnTorch and SpikingJelly exporters) every equation ``tau dv/dt = f`` becomes
``v[t] = v + dt / tau * f``, i.e. ``tau_steps = tau / dt`` in snnir's per-step models:

- ``LIF`` (``tau dv/dt = (v_leak - v) + r I``): snnir ``LIF`` with ``tau = tau / dt`` and
  ``v_reset``. When ``r dt / tau = 1`` (snnTorch: ``r = tau / dt``) the form
  ``decay_input=False`` is used, ``v[t] = v - (v - v_reset) / tau + x``, else
  ``decay_input=True``, ``v[t] = v + (x - (v - v_reset)) / tau`` with ``x = r I``. An input gain
  other than 1 and a leak potential ``v_leak != v_reset`` become an ``affine`` node before the
  neuron (``x = gain I + offset``), so the leak still targets ``v_leak``.
- ``IF`` (``dv/dt = r I``): snnir ``IF`` with ``x = r I`` per step, *not* ``r dt I``: the peers
  (Sinabs, Norse, snnTorch) read ``r`` as the per-step gain and write ``r = 1`` for ``v += I``.
  SpikingJelly writes ``r = 1 / dt`` for that same neuron (NIR's Euler form), so ``r = 1 / dt``
  (``r dt = 1``) is read as a gain of 1 too. ``I``: the same, as an ``integrator``.
- ``CubaLIF`` (``tau_syn dI/dt = -I + w_in S``, ``tau_mem dv/dt = (v_leak - v) + r I``): snnir
  ``CubaLIF`` with ``tau_syn / dt``, ``tau_mem / dt``; the current is kept in units of voltage per
  step, so the input gain is ``(r dt / tau_mem) (w_in dt / tau_syn)`` (1 for snnTorch's
  ``r = tau_mem / dt``, ``w_in = tau_syn / dt``). The updated current feeds the voltage within
  the step. ``v_leak`` must equal ``v_reset`` (a leak offset inside the filtered current has no
  snnir form).
- ``LI`` / ``CubaLI``: ``integrator`` nodes (no firing; the output is ``v``) of ``LIF`` /
  ``CubaLIF`` with ``v_reset = v_leak``.
- ``Threshold``: a neuron of the memoryless ``Threshold`` model. ``Delay(delay)``:
  ``delay(steps = delay / dt)``. ``SumPool2d``: ``avgpool2d`` then ``scale(kh * kw)``.

Input gains within 1e-6 of 1 count as 1 (exporters compute ``r = tau / dt`` in float32) and
time constants in steps are rounded to 12 significant digits; a time constant shorter than
``dt`` is refused (the Euler step would overshoot). Conventions that differ from
NIR's text: snnir fires when ``v >= v_threshold`` (NIR and the peers: ``v > v_threshold``;
spikes differ only when ``v`` lands exactly on the threshold), and every voltage starts at
``v_reset`` (NIR leaves the initial state open; the peers start at 0).
Time constants, thresholds, reset and leak potentials may differ per neuron (Spyx writes a ``tau``
per neuron): they become per-neuron parameter arrays of the snnir neuron; the input gains ``r`` and
``w_in`` (and a leak offset) become an ``affine`` node, so they may vary per channel (axis 0).
Several edges into one node are summed (an ``add`` node); a cycle becomes an snnir cycle whose
closing edge reads the previous step (zero before the first step). A fed-back ``Affine`` is
computed on the previous step's spikes, so its bias enters from the second step on, as in Norse's
and SpikingJelly's importers (the feedback is 0, bias included, at the first step). Nested
``NIRGraph`` nodes are inlined with ids ``<graph>_<node>``. Leading 1s on ``Input``/``Output``
types (batch or time axes some exporters write: Rockpool's ``(1, 1, 1)`` Output for a ``(1,)``
signal) are dropped where unambiguous: an Input keeps the rank its consumer takes (Affine/Linear 1,
Conv1d 2, Conv2d 3), an Output may declare the received shape with leading 1s.
Import is linear in the size of the graph (shapes are inferred once per node).
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from snnir.errors import GraphError, ShapeError
from snnir.graph import Graph
from snnir.validation import check_loaded

from .nir_graph import SUPPORTED, contract_pass_throughs, flatten, nir_errors, read_nir


def from_nir(source: str | os.PathLike | Any, dt: float = 1e-4, name: str | None = None,
             safe: bool | None = None) -> Graph:
    """Import a NIR graph (a ``.nir`` file or a ``nir.NIRGraph``) as an snnir graph.

    ``dt`` is the time step (seconds) of the forward-Euler discretisation (see the module docs).
    A file is read with its sizes checked against ``snnir.limits``; ``safe=True`` (default: the
    limits' ``safe``) parses the HDF5 in a child process (``snnir.isolation``). Every defect of a
    file raises ``FormatError`` naming the file and the node.

    Example:
        >>> import nir, numpy as np
        >>> g = nir.NIRGraph.from_list(
        ...     nir.Affine(np.eye(2, dtype=np.float32), np.zeros(2, np.float32)),
        ...     nir.LIF(tau=np.full(2, 2e-3), r=np.full(2, 20.0), v_leak=np.zeros(2), v_threshold=np.ones(2)))
        >>> s = from_nir(g, dt=1e-4)
        >>> [(n.op, n.attrs.get("tau")) for n in s]
        [('input', None), ('linear', None), ('neuron', 20.0), ('output', None)]
    """
    import nir

    if dt <= 0:
        raise ValueError(f"from_nir: dt must be positive, got {dt}")
    where = "<NIRGraph>"
    if isinstance(source, (str, os.PathLike)):
        where = str(source)
        graph = read_nir(where, safe=safe)
    elif isinstance(source, nir.NIRGraph):
        graph = source
    else:
        raise TypeError(f"from_nir takes a path or a nir.NIRGraph, got {type(source).__name__}")
    with nir_errors(where, from_file=where != "<NIRGraph>"):
        nodes, edges = flatten(graph)
        return check_loaded(_Builder(nodes, edges, dt, where).build(name or "nir"))


# --- building ---------------------------------------------------------------------------------------
def _arr(value: Any, node: str, field: str) -> np.ndarray:
    if value is None:
        raise GraphError(f"NIR node {node!r}: field {field!r} is missing")
    if hasattr(value, "detach"):  # peers hand torch tensors inside NIR nodes
        value = value.detach().cpu().numpy()
    out = np.asarray(value, dtype=np.float64)
    if not np.isfinite(out).all():
        raise GraphError(f"NIR node {node!r}: field {field!r} has NaN or Inf values")
    return out


def _value(node: str, field: str, value: Any) -> float | np.ndarray:
    """One value for the layer (a float), or per-neuron values (a float64 array that broadcasts to the
    layer; the caller has checked that): neuron parameters may be either."""
    a = _arr(value, node, field)
    if a.size == 0:
        raise GraphError(f"NIR node {node!r}: {field} is empty")
    return float(a.flat[0]) if np.all(a == a.flat[0]) else a


def _uniform(node: str, field: str, value: Any) -> float:
    a = _arr(value, node, field)
    if a.size == 0 or not np.all(a == a.flat[0]):
        raise GraphError(f"NIR node {node!r}: {field} must be one value for the whole layer (snnir neuron "
                         f"parameters are per layer), got {np.unique(a)[:5]}")
    return float(a.flat[0])


def _per_channel(node: str, field: str, a: np.ndarray, shape: tuple[int, ...]) -> float | np.ndarray:
    """A scalar, or one value per channel (axis 0 of ``shape``) for an ``affine`` node."""
    if a.size == 0:
        raise GraphError(f"NIR node {node!r}: {field} is empty")
    if np.all(a == a.flat[0]):
        return float(a.flat[0])
    try:
        full = np.broadcast_to(a, shape)
    except ValueError:
        raise GraphError(f"NIR node {node!r}: {field} of shape {a.shape} does not fit the layer shape "
                         f"{shape}") from None
    per = full.reshape(shape[0], -1)
    if not np.all(per == per[:, :1]):
        raise GraphError(f"NIR node {node!r}: {field} varies within a channel; snnir supports one value per "
                         f"layer or per channel (axis 0 of {shape})")
    return per[:, 0].astype(np.float32)


def _steps(seconds: float | np.ndarray, dt: float) -> float | np.ndarray:
    """``seconds / dt`` to 12 significant digits (undoes the float error of ``tau * dt / dt``)."""
    if isinstance(seconds, np.ndarray):
        return np.vectorize(lambda s: float(f"{s / dt:.12g}"), otypes=[np.float64])(seconds)
    return float(f"{seconds / dt:.12g}")


def _safe_id(name: str) -> str:
    base = re.sub(r"\W", "_", name) or "node"
    return f"n_{base}" if base[0].isdigit() else base


class _Builder:
    def __init__(self, nodes: dict[str, Any], edges: list[tuple[str, str]], dt: float, where: str) -> None:
        self.nodes, self.dt, self.where = nodes, float(dt), where
        self.edges = contract_pass_throughs(nodes, list(dict.fromkeys(edges)))
        self.g = Graph()
        self.out: dict[str, str] = {}  # NIR name -> snnir id of its value
        self.shapes: dict[str, tuple[int, ...]] = {}  # snnir id -> inferred shape (once per node)
        self.preds: dict[str, list[str]] = {n: [] for n in nodes}
        self.succs: dict[str, list[str]] = {n: [] for n in nodes}
        for a, b in self.edges:
            self.preds[b].append(a)
            self.succs[a].append(b)

    def _id(self, name: str) -> str:
        base, k = _safe_id(name), 1
        candidate = base
        while candidate in self.g:
            candidate, k = f"{base}_{k}", k + 1
        return candidate

    def _order(self) -> list[str]:
        """Reverse DFS post-order from the inputs: every edge goes forward except cycle-closing ones."""
        import nir

        succ = self.succs
        roots = [n for n, v in self.nodes.items() if isinstance(v, nir.Input)]
        if not roots:
            raise GraphError(f"{self.where}: the NIR graph has no Input node")
        seen: set[str] = set()
        post: list[str] = []
        for root in [*roots, *self.nodes]:
            if root in seen:
                continue
            seen.add(root)
            stack = [(root, iter(succ[root]))]
            while stack:
                node, it = stack[-1]
                nxt = next((s for s in it if s not in seen), None)
                if nxt is None:
                    post.append(node)
                    stack.pop()
                else:
                    seen.add(nxt)
                    stack.append((nxt, iter(succ[nxt])))
        order = post[::-1]
        # outputs have no successors: keep them last, in the file's order (the graph's output order)
        outputs = [n for n, v in self.nodes.items() if isinstance(v, nir.Output)]
        return [n for n in order if n not in outputs] + outputs

    def build(self, name: str) -> Graph:
        self.g.name = name
        order = self._order()
        pos = {n: i for i, n in enumerate(order)}
        pending: list[tuple[str, str, int]] = []
        for node_name in order:
            preds = self.preds[node_name]
            forward = [a for a in preds if pos[a] < pos[node_name]]
            back = [a for a in preds if pos[a] >= pos[node_name]]
            if isinstance(self.nodes[node_name], _input_type()):
                src = None
            elif not forward:
                raise GraphError(f"NIR node {node_name!r} has no input from an earlier node "
                                 f"(inputs: {preds}); snnir needs each node reachable from an Input")
            elif len(preds) == 1:
                src = self.out[forward[0]]
            else:  # NIR sums the inputs of a node
                inputs = [self.out[a] for a in forward]
                src = self.g.add_node("add", inputs, id=self._id(f"{node_name}_sum"))
                forward = inputs
                pending += [(a, src, len(forward) + i) for i, a in enumerate(back)]
            try:
                self.out[node_name] = self._convert(node_name, self.nodes[node_name], src)
            except GraphError as e:
                msg = str(e) if node_name in str(e) else f"NIR node {node_name!r}: {e}"
                raise GraphError(msg) from None
            except Exception as e:  # odd values in a node: named here, a FormatError for a file (nir_errors)
                raise GraphError(f"NIR node {node_name!r} ({type(self.nodes[node_name]).__name__}): "
                                 f"{type(e).__name__}: {e}") from None
        for a, dst, port in pending:
            self.g.add_edge(self.out[a], dst, port, offset=1)  # a cycle's closing edge: previous step
        try:
            return self.g.validate()
        except GraphError as e:
            raise GraphError(f"{self.where}: {e}") from None

    # --- one NIR node -> snnir nodes; returns the id holding its output ---------------------------
    def _convert(self, name: str, node: Any, src: str | None) -> str:
        kind = type(node).__name__
        if kind not in SUPPORTED:
            raise GraphError(f"NIR node {name!r} has unsupported type {kind}; snnir reads {', '.join(SUPPORTED)}")
        fields = [f for f in _ELEMENTWISE if getattr(node, f, None) is not None]
        if src is not None and fields:  # per-neuron parameters must fit the layer they act on
            shape = self._shape(src)
            for field in fields:
                a = _arr(getattr(node, field), name, field)
                try:
                    np.broadcast_to(a, shape)
                except ValueError:
                    raise GraphError(f"NIR node {name!r} ({kind}): {field} has shape {a.shape}, but its input "
                                     f"has shape {shape}") from None
        return getattr(self, f"_{kind.lower()}")(name, node, src)

    def _shape(self, node_id: str) -> tuple[int, ...]:
        """The shape of ``node_id``, inferred once per node from its inputs' (no graph walk)."""
        stack = [node_id]
        while stack:
            current = stack[-1]
            if current in self.shapes:
                stack.pop()
                continue
            preds = self.g.predecessors(current)
            missing = [p for p in preds if p not in self.shapes]
            if missing:
                stack.extend(missing)
                continue
            node = self.g.node(current)
            try:
                shape = node.attrs["shape"] if node.op == "input" else \
                    node.spec.infer_shape(node.attrs, node.params, [self.shapes[p] for p in preds])
            except GraphError as e:
                raise type(e)(f"node {current!r} ({node.op}): {e}") from None
            except Exception as e:  # noqa: BLE001 - a shape rule failing on odd values names the node
                raise ShapeError(f"node {current!r} ({node.op}): cannot infer the output shape "
                                 f"({type(e).__name__}: {e})") from None
            self.shapes[current] = tuple(int(d) for d in shape)
            stack.pop()
        return self.shapes[node_id]

    def _input(self, name: str, node: Any, src: None) -> str:
        shape = tuple(int(s) for s in np.asarray(node.input_type["input"]).reshape(-1))
        ranks = {_consumer_rank(self.nodes[b]) for b in self.succs[name]}
        if len(ranks) == 1 and None not in ranks:  # leading 1s beyond what the consumer takes: batch/time axes
            rank = ranks.pop()
            while len(shape) > rank and shape[0] == 1:
                shape = shape[1:]
        return self.g.add_input(shape, id=self._id(name))

    def _output(self, name: str, node: Any, src: str) -> str:
        declared = (node.output_type or {}).get("output")
        if declared is not None and np.size(declared):
            declared = tuple(int(d) for d in np.asarray(declared).reshape(-1))
            shape = self._shape(src)
            extra = len(declared) - len(shape)  # leading 1s: batch/time axes some exporters write
            if extra < 0 or declared[extra:] != shape or any(d != 1 for d in declared[:extra]):
                raise GraphError(f"NIR node {name!r} (Output) declares shape {declared}, but receives {shape}")
        return self.g.add_output(src, id=self._id(name))

    def _affine(self, name: str, node: Any, src: str) -> str:
        w = _arr(node.weight, name, "weight").astype(np.float32)
        params = {"weight": w, "bias": _arr(node.bias, name, "bias").astype(np.float32)}
        return self.g.add_node("linear", [src], params=params, id=self._id(name))

    def _linear(self, name: str, node: Any, src: str) -> str:
        w = _arr(node.weight, name, "weight").astype(np.float32)
        return self.g.add_node("linear", [src], params={"weight": w}, id=self._id(name))

    def _scale(self, name: str, node: Any, src: str) -> str:
        return self._gain(name, src, _arr(node.scale, name, "scale"), 0.0, final=True)

    def _conv(self, name: str, node: Any, src: str, ndim: int) -> str:
        w = _arr(node.weight, name, "weight").astype(np.float32)
        if w.ndim != ndim + 2:
            raise GraphError(f"NIR node {name!r}: Conv{ndim}d weight must have {ndim + 2} axes, got {w.shape}")
        stride, dilation = _ints(node.stride, ndim), _ints(node.dilation, ndim)
        padding = node.padding
        if isinstance(padding, bytes):
            padding = padding.decode()
        if isinstance(padding, str):
            if padding == "valid":
                padding = (0,) * ndim
            elif padding == "same" and all(s == 1 for s in stride) and all(k % 2 for k in w.shape[2:]):
                padding = tuple(d * (k // 2) for d, k in zip(dilation, w.shape[2:]))
            else:
                raise GraphError(f"NIR node {name!r}: padding {padding!r} needs stride 1 and odd kernels in snnir")
        params = {"weight": w}
        if node.bias is not None and np.size(node.bias):
            params["bias"] = _arr(node.bias, name, "bias").astype(np.float32).reshape(-1)
        attrs = {"stride": stride, "padding": _ints(padding, ndim), "dilation": dilation, "groups": int(node.groups)}
        return self.g.add_node(f"conv{ndim}d", [src], attrs=attrs, params=params, id=self._id(name))

    def _conv1d(self, name: str, node: Any, src: str) -> str:
        return self._conv(name, node, src, 1)

    def _conv2d(self, name: str, node: Any, src: str) -> str:
        return self._conv(name, node, src, 2)

    def _pool(self, name: str, node: Any, src: str) -> str:
        kernel = _ints(node.kernel_size, 2)
        attrs = {"kernel_size": kernel, "stride": _ints(node.stride, 2), "padding": _ints(node.padding, 2)}
        return self.g.add_node("avgpool2d", [src], attrs=attrs, id=self._id(name))

    def _avgpool2d(self, name: str, node: Any, src: str) -> str:
        return self._pool(name, node, src)

    def _sumpool2d(self, name: str, node: Any, src: str) -> str:
        pooled = self._pool(f"{name}_avg", node, src)
        k = _ints(node.kernel_size, 2)
        return self.g.add_node("scale", [pooled], attrs={"factor": float(k[0] * k[1])}, id=self._id(name))

    def _flatten(self, name: str, node: Any, src: str) -> str:
        attrs = {"start": int(node.start_dim), "end": int(node.end_dim)}
        return self.g.add_node("flatten", [src], attrs=attrs, id=self._id(name))

    def _delay(self, name: str, node: Any, src: str) -> str:
        steps = _uniform(name, "delay", node.delay) / self.dt
        if abs(steps - round(steps)) > 1e-6 * max(1.0, steps) or round(steps) < 1:
            raise GraphError(f"NIR node {name!r}: delay {steps * self.dt} s is not a whole number (>= 1) of "
                             f"steps of dt = {self.dt}")
        return self.g.add_node("delay", [src], attrs={"steps": int(round(steps))}, id=self._id(name))

    def _threshold(self, name: str, node: Any, src: str) -> str:
        attrs = {"model": "Threshold", "v_threshold": _value(name, "threshold", node.threshold)}
        return self._neuron(name, src, "neuron", attrs)

    # --- neurons ---------------------------------------------------------------------------------
    def _gain(self, name: str, src: str, gain: np.ndarray | float, offset: np.ndarray | float,
              final: bool = False) -> str:
        """``x -> gain x + offset`` before a neuron (nothing when it is the identity)."""
        shape = self._shape(src)
        gain = np.asarray(gain, np.float64)
        gain = np.where(np.abs(gain - 1.0) <= 1e-6, 1.0, gain)  # float rounding of r = tau / dt, r = 1 / dt
        g = _per_channel(name, "input gain", gain, shape)
        o = _per_channel(name, "input offset", np.asarray(offset, np.float64), shape)
        node_id = self._id(name if final else f"{name}_in")
        if isinstance(o, float) and o == 0.0:
            if isinstance(g, float):
                if g == 1.0 and not final:
                    return src
                return self.g.add_node("scale", [src], attrs={"factor": g}, id=node_id)
        params = {"weight": np.asarray(g, np.float32), "bias": np.asarray(o, np.float32)}
        return self.g.add_node("affine", [src], params=params, id=node_id)

    def _tau(self, name: str, field: str, value: Any) -> float | np.ndarray:
        """A time constant in steps (one per layer or per neuron); forward Euler overshoots (and
        diverges) when it is under one."""
        seconds = _value(name, field, value)
        steps = _steps(seconds, self.dt)
        if np.any(np.asarray(steps) < 1.0):
            shortest = float(np.min(seconds))
            raise GraphError(f"NIR node {name!r}: {field} = {shortest:g} s is shorter than dt = {self.dt:g} s; "
                             "forward Euler needs tau >= dt (import with a smaller dt)")
        return steps

    def _neuron(self, name: str, src: str, op: str, attrs: dict[str, Any]) -> str:
        """A neuron/integrator node; per-neuron values (arrays) are its params, the rest attributes."""
        params = {k: np.asarray(v, np.float64) for k, v in attrs.items() if isinstance(v, np.ndarray)}
        attrs = {k: v for k, v in attrs.items() if k not in params}
        return self.g.add_node(op, [src], attrs=attrs, params=params, id=self._id(name))

    def _leaky(self, name: str, node: Any, src: str, v_reset: float | np.ndarray, op: str,
               extra: dict[str, Any]) -> str:
        tau = self._tau(name, "tau", node.tau)
        r, v_leak = _arr(node.r, name, "r"), _arr(node.v_leak, name, "v_leak")
        if np.allclose(r / tau, 1.0, rtol=0, atol=1e-6):  # snnTorch: x is not scaled by dt / tau
            x = self._gain(name, src, 1.0, (v_leak - v_reset) / tau)
            decay_input = False
        else:
            x = self._gain(name, src, r, v_leak - v_reset)
            decay_input = True
        attrs = {"model": "LIF", "tau": tau, "decay_input": decay_input, "v_reset": v_reset, **extra}
        return self._neuron(name, x, op, attrs)

    def _lif(self, name: str, node: Any, src: str) -> str:
        v_reset = _value(name, "v_reset", node.v_reset)
        return self._leaky(name, node, src, v_reset, "neuron",
                           {"v_threshold": _value(name, "v_threshold", node.v_threshold)})

    def _li(self, name: str, node: Any, src: str) -> str:
        v_leak = _value(name, "v_leak", node.v_leak)
        return self._leaky(name, node, src, v_leak, "integrator", {})

    def _step_gain(self, name: str, node: Any) -> np.ndarray:
        """IF/I's per-step input gain: ``r``, or 1 where ``r = 1 / dt`` (see the module doc)."""
        r = _arr(node.r, name, "r")
        return np.where(np.isclose(r * self.dt, 1.0, rtol=1e-6, atol=0.0), 1.0, r)

    def _if(self, name: str, node: Any, src: str) -> str:
        x = self._gain(name, src, self._step_gain(name, node), 0.0)
        attrs = {"model": "IF", "v_threshold": _value(name, "v_threshold", node.v_threshold),
                 "v_reset": _value(name, "v_reset", node.v_reset)}
        return self._neuron(name, x, "neuron", attrs)

    def _i(self, name: str, node: Any, src: str) -> str:
        x = self._gain(name, src, self._step_gain(name, node), 0.0)
        return self._neuron(name, x, "integrator", {"model": "IF", "v_reset": 0.0})

    def _cuba(self, name: str, node: Any, src: str, v_reset: float | np.ndarray, op: str,
              extra: dict[str, Any]) -> str:
        tau_syn, tau_mem = self._tau(name, "tau_syn", node.tau_syn), self._tau(name, "tau_mem", node.tau_mem)
        v_leak = _arr(node.v_leak, name, "v_leak")
        if not np.all(v_leak == v_reset):
            raise GraphError(f"NIR node {name!r}: v_leak {np.unique(v_leak)[:5]} differs from v_reset "
                             f"{np.unique(v_reset)[:5]}; snnir's CubaLIF leaks towards v_reset")
        gain = (_arr(node.r, name, "r") / tau_mem) * (_arr(node.w_in, name, "w_in") / tau_syn)
        x = self._gain(name, src, gain, 0.0)
        attrs = {"model": "CubaLIF", "tau_syn": tau_syn, "tau_mem": tau_mem, "v_reset": v_reset, **extra}
        return self._neuron(name, x, op, attrs)

    def _cubalif(self, name: str, node: Any, src: str) -> str:
        return self._cuba(name, node, src, _value(name, "v_reset", node.v_reset), "neuron",
                          {"v_threshold": _value(name, "v_threshold", node.v_threshold)})

    def _cubali(self, name: str, node: Any, src: str) -> str:
        return self._cuba(name, node, src, _value(name, "v_leak", node.v_leak), "integrator", {})


_ELEMENTWISE = ("tau", "tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in", "threshold", "delay",
                "scale")


def _input_type() -> type:
    import nir

    return nir.Input


def _ints(value: Any, n: int) -> tuple[int, ...]:
    a = np.asarray(value).reshape(-1)
    if a.size == 1:
        return (int(a[0]),) * n
    if a.size != n:
        raise GraphError(f"expected {n} integers, got {value!r}")
    return tuple(int(v) for v in a)


def _consumer_rank(consumer: Any) -> int | None:
    """The input rank a NIR node takes (Affine/Linear 1, Conv1d 2, Conv2d 3), or None if any."""
    import nir

    if isinstance(consumer, (nir.Affine, nir.Linear)):
        return 1
    if isinstance(consumer, nir.Conv2d):
        return 3
    if isinstance(consumer, nir.Conv1d):
        return 2
    return None
