"""``Learner``: a plasticity rule applied to one synapse of a torch network.

The learner records the synapse's input (pre-synaptic spikes) and the post-synaptic neuron's
output through forward hooks, and ``step()`` runs the rule over what was recorded since the last
call: traces, per-synapse states and the weight are updated once per recorded time step (the
weight changes in place, under ``torch.no_grad``, unless ``apply=False``). Records are detached
copies; neither the forward pass nor autograd is changed, so surrogate-gradient training and
local learning can be mixed.

Networks: ``snnir.nn`` modules (or plain ``torch.nn.Linear``/``Conv1d``/``Conv2d``, taken as
single-step) and compiled graphs (``snnir.compile``), where the synapse is named by node id and
the post neuron is found from the graph. A graph whose ``meta["plasticity"]`` names learning
synapses compiles with one learner per entry (``module.learners``), and ``snnir.trace`` records
the learners attached to a traced model's synapses, so rules round-trip through ``.snnir`` files.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.autograd.graph import increment_version

from snnir.errors import GraphError, ShapeError, TraceError
from snnir.learning.attribute import SYNAPSE_OPS, infer_post, plasticity
from snnir.learning.rule import PlasticityRule, get_rule

from .base import StepModule
from .lower import GraphModule
from .plasticity_geometry import Geometry
from .plasticity_kernel import KernelBuildError
from .plasticity_steps import CompiledRule, fused_available, fused_steps, reference_steps

BACKENDS = ("auto", "torch", "fused")
# synapse module -> its learner (weakly: a learner lives as long as its hooks on the module)
_ATTACHED: weakref.WeakKeyDictionary[nn.Module, weakref.ref[Learner]] = weakref.WeakKeyDictionary()


class _GraphView:
    """``successors``/``node(..).op`` of a compiled graph, for ``infer_post``."""

    def __init__(self, gm: GraphModule) -> None:
        self._op = gm._op
        self._succ: dict[str, list[str]] = {n: [] for n in gm._op}
        for node, preds in gm._preds.items():
            for src, _ in preds:
                if node not in self._succ[src]:
                    self._succ[src].append(node)

    def successors(self, node: str) -> list[str]:
        return self._succ[node]

    def node(self, node: str) -> Any:
        return type("NodeOp", (), {"op": self._op[node]})


def _multi_step(module: nn.Module) -> bool:
    return isinstance(module, StepModule) and module.step_mode == "m"


class Learner:
    """Apply a ``PlasticityRule`` to one linear or convolutional synapse of a torch network.

    Args:
        module: the synapse module (``net.fc``), a network holding it (then ``synapse`` is its
            module path), or a compiled graph (``snnir.compile``; ``synapse`` is a node id).
        rule: a rule instance (``STDP(tau_pre=10)``), or the name of a registered rule (defaults).
        synapse: the synapse's module path or node id, when ``module`` is a network or graph.
        post: the module whose output is the post-synaptic spike train (a module, or its path in
            ``module``); for a compiled graph, a node id, by default the neuron the synapse drives.
        backend: ``"fused"`` (the generated C kernel: CPU, float32/float64), ``"torch"`` (the
            reference path: any device and dtype), or ``"auto"`` (fused where it runs).

    Spikes are recorded in the modules' step mode: a multi-step module (``step_mode='m'``)
    records ``[T, N, ...]`` per call, a single-step one ``[N, ...]``. ``step()`` consumes the
    records; call it after every forward (or every few), and ``reset()`` with the network's
    ``snn.reset`` between independent sequences: traces and per-synapse states persist across
    calls until then, as neuron state does.

    Example:
        >>> import torch
        >>> from snnir import nn as snn
        >>> from snnir.learning import Learner, ThreeFactor
        >>> net = torch.nn.Sequential(snn.Linear(6, 3, bias=False), snn.LIF(tau=2.0))
        >>> learner = Learner(net, ThreeFactor(lr=0.1), synapse="0", post="1")
        >>> with torch.no_grad():
        ...     _ = net((torch.rand(2, 6) < 0.5).float())     # one step, batch of 2
        >>> dw = learner.step(reward=torch.tensor([1.0, -0.5]))  # one reward per sample
        >>> dw.shape
        torch.Size([3, 6])
    """

    def __init__(self, module: nn.Module, rule: PlasticityRule | str, *, synapse: str | None = None,
                 post: nn.Module | str | None = None, backend: str = "auto") -> None:
        if isinstance(rule, str):
            rule = get_rule(rule)()
        if not isinstance(rule, PlasticityRule):
            raise TypeError(f"Learner: rule must be a PlasticityRule (e.g. STDP()) or a rule name, got "
                            f"{type(rule).__name__}")
        if backend not in BACKENDS:
            raise ValueError(f"Learner: backend must be one of {BACKENDS}, got {backend!r}")
        self.rule = rule
        self.backend = backend
        self.synapse, self.post, self.name, self.post_name = self._resolve(module, synapse, post)
        self.geometry = Geometry.of(self.synapse, self.name)
        if self.synapse.weight is None or not self.synapse.weight.is_floating_point():
            raise TypeError(f"Learner: {self.name} needs a floating-point weight")
        self.compiled = CompiledRule(rule)
        self._pre: list[torch.Tensor] = []
        self._post: list[torch.Tensor] = []
        self._state: dict[str, torch.Tensor] | None = None
        self._enabled = True
        self._handles = [self.synapse.register_forward_pre_hook(self._record_pre),
                         self.post.register_forward_hook(self._record_post)]
        previous = _ATTACHED.get(self.synapse)
        if previous is not None and previous() is not None and previous() is not self:
            raise GraphError(f"Learner: {self.name} already has a learner ({previous()!r}); close() it first")
        _ATTACHED[self.synapse] = weakref.ref(self)

    # --- construction --------------------------------------------------------------------------------
    @staticmethod
    def _resolve(module: nn.Module, synapse: str | None, post: nn.Module | str | None
                 ) -> tuple[nn.Module, nn.Module, str, str]:
        if isinstance(module, GraphModule):
            if not isinstance(synapse, str):
                raise TypeError("Learner on a compiled graph: name the synapse node, Learner(module, rule, "
                                "synapse='fc1')")
            if synapse not in module._op:
                raise GraphError(f"Learner: graph {module.graph_name!r} has no node {synapse!r}; nodes: "
                                 f"{', '.join(module._key)}")
            op = module._op[synapse]
            if op not in SYNAPSE_OPS:
                raise GraphError(f"Learner: node {synapse!r} of graph {module.graph_name!r} is a {op!r} node; a "
                                 f"plasticity rule needs a synapse with a weight ({', '.join(SYNAPSE_OPS)})")
            if post is None:
                post = infer_post(_GraphView(module), synapse)  # type: ignore[arg-type]
            if not isinstance(post, str) or post not in module._key:
                raise GraphError(f"Learner: post must be a node id of graph {module.graph_name!r}, got {post!r}")
            return module.layer(synapse), module.layer(post), f"node {synapse!r}", f"node {post!r}"
        if not isinstance(module, nn.Module):
            raise TypeError(f"Learner expects a torch module (a synapse, a network or a compiled graph), got "
                            f"{type(module).__name__}")
        if synapse is not None:
            try:
                syn_module = module.get_submodule(synapse)
            except AttributeError:
                raise GraphError(f"Learner: {type(module).__name__} has no submodule {synapse!r}") from None
            name = f"synapse {synapse!r}"
        else:
            syn_module, name = module, f"synapse {type(module).__name__}"
        if isinstance(post, str):
            try:
                post_module = module.get_submodule(post)
            except AttributeError:
                raise GraphError(f"Learner: {type(module).__name__} has no submodule {post!r}") from None
            post_name = f"post {post!r}"
        elif isinstance(post, nn.Module):
            post_module, post_name = post, f"post {type(post).__name__}"
        else:
            raise TypeError(f"Learner: give the post-synaptic module whose output spikes the rule reads "
                            f"(post=net.lif or post='lif'), got {post!r}")
        return syn_module, post_module, name, post_name

    # --- recording -------------------------------------------------------------------------------------
    def _record_pre(self, module: nn.Module, args: tuple) -> None:
        if self._enabled and args and isinstance(args[0], torch.Tensor):
            x = args[0].detach()
            self._pre.append(x if _multi_step(module) else x.unsqueeze(0))

    def _record_post(self, module: nn.Module, args: tuple, out: Any) -> None:
        if self._enabled and isinstance(out, torch.Tensor):
            y = out.detach()
            self._post.append(y if _multi_step(module) else y.unsqueeze(0))

    def enable(self) -> None:
        """Record again after ``disable()``."""
        if not self._handles:
            raise RuntimeError(f"Learner on {self.name} is closed; create a new one")
        self._enabled = True

    def disable(self) -> None:
        """Stop recording (inference without learning); records and state are kept."""
        self._enabled = False

    def close(self) -> None:
        """Remove the hooks and forget records and state (idempotent)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self._pre, self._post, self._state = [], [], None
        ref = _ATTACHED.get(self.synapse)
        if ref is not None and ref() is self:
            del _ATTACHED[self.synapse]

    def __enter__(self) -> Learner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def reset(self) -> None:
        """Forget traces, per-synapse states and unconsumed records (the weight is kept)."""
        self._pre, self._post, self._state = [], [], None

    @property
    def pending_steps(self) -> int:
        """Recorded time steps not yet consumed by ``step()``."""
        return sum(x.shape[0] for x in self._pre)

    # --- the rule ---------------------------------------------------------------------------------------
    def _new_state(self, pre: torch.Tensor, post: torch.Tensor) -> dict[str, torch.Tensor]:
        lr, weight = self.compiled.lowered, self.synapse.weight
        B = pre.shape[1]

        def filled(names: tuple[str, ...], shape: tuple[int, ...]) -> torch.Tensor:
            t = torch.empty(len(names), *shape, dtype=weight.dtype, device=weight.device)
            for i, k in enumerate(names):
                t[i].fill_(self.compiled.init_value(k))
            return t

        syn_shape = (B, self.geometry.out_channels, self.geometry.fan_in) if lr.batched else (0,)
        return {"pre": filled(lr.pre_traces, tuple(pre.shape[1:])),
                "post": filled(lr.post_traces, tuple(post.shape[1:])),
                "synapse": filled(lr.synapse_states, syn_shape)}

    def _check_names(self, given: Mapping[str, Any]) -> None:
        expected = self.compiled.lowered.modulators
        unknown = set(given) - set(expected)
        missing = [m for m in expected if m not in given]
        if unknown or missing:
            raise TypeError(f"Learner on {self.name}: rule {self.rule.name} takes modulators {list(expected)}"
                            f"{'; missing ' + str(missing) if missing else ''}"
                            f"{'; unknown ' + str(sorted(unknown)) if unknown else ''}")

    def _modulators(self, given: Mapping[str, Any], T: int, B: int) -> torch.Tensor:
        lr, weight = self.compiled.lowered, self.synapse.weight
        self._check_names(given)
        out = torch.empty(T, len(lr.modulators), B, dtype=weight.dtype, device=weight.device)
        for i, m in enumerate(lr.modulators):
            value = torch.as_tensor(given[m], dtype=weight.dtype, device=weight.device)
            if not torch.isfinite(value).all():
                raise ValueError(f"Learner on {self.name}: modulator {m!r} has NaN or Inf values")
            if value.dim() == 0 or (value.dim() == 1 and value.shape[0] == B):
                out[:, i] = value
            elif value.dim() == 2 and tuple(value.shape) == (T, B):
                out[:, i] = value
            else:
                raise ShapeError(f"Learner on {self.name}: modulator {m!r} has shape {list(value.shape)}; expected a "
                                 f"number, one value per sample [{B}], or per recorded step and sample [{T}, {B}]")
        return out

    def _backend(self, weight: torch.Tensor) -> str:
        if self.backend == "torch":
            return "torch"
        if not fused_available(weight):
            if self.backend == "fused":
                raise RuntimeError(f"Learner on {self.name}: the fused kernel runs on CPU float32/float64 weights, "
                                   f"this one is {weight.dtype} on {weight.device}; use backend='torch'")
            return "torch"
        return "fused"

    @torch.no_grad()
    def step(self, *, apply: bool = True, **modulators: Any) -> torch.Tensor | None:
        """Run the rule over the steps recorded since the last call.

        Args:
            apply: update the weight after every step (``w <- clip(w + dw)``); with ``False`` the
                weight stays fixed (the increments are computed with it) and only the returned sum
                tells what the rule would do, e.g. to hand to an optimizer (``w.grad = -dw``).
            **modulators: the rule's modulators (``reward=...``): a number, one value per sample
                ``[N]``, or one per recorded step and sample ``[T, N]``.

        Returns:
            The sum over the recorded steps of the rule's increments ``dw`` (weight-shaped, before
            the bounds), or ``None`` when nothing was recorded.
        """
        if not self._handles:
            raise RuntimeError(f"Learner on {self.name} is closed; create a new one")
        if not self._pre and not self._post:
            self._check_names(modulators)  # even when there is nothing to learn from
            return None
        weight = self.synapse.weight
        try:
            pre = self.geometry.canonical_pre(torch.cat([x.to(weight.dtype) for x in self._pre]))
            post = self.geometry.canonical_post(torch.cat([y.to(weight.dtype) for y in self._post]))
        except RuntimeError as e:
            raise ShapeError(f"Learner on {self.name}: recorded spikes of different shapes across calls ({e}); "
                             "call reset() when the batch size changes") from None
        finally:
            self._pre, self._post = [], []
        self.geometry.check_pair(pre, post)
        T, B = pre.shape[:2]
        mods = self._modulators(modulators, T, B)
        if self._state is None:
            self._state = self._new_state(pre, post)
        elif self._state["pre"].shape[1:] != pre.shape[1:] or self._state["post"].shape[1:] != post.shape[1:]:
            raise ShapeError(f"Learner on {self.name}: traces hold batch {self._state['pre'].shape[1]} with per-sample "
                             f"shape {list(self._state['pre'].shape[2:])}, this call recorded batch {B} with "
                             f"{list(pre.shape[2:])}; call reset() before changing the batch size")
        w2d = weight.data.view(self.geometry.out_channels, -1)
        delta = None
        if self._backend(weight) == "fused":
            try:
                delta = fused_steps(self.compiled, self.geometry, pre, post, self._state, w2d, mods, apply)
            except KernelBuildError as e:
                if self.backend == "fused":
                    raise
                warnings.warn(f"plasticity kernel unavailable, using the torch path: {e}", stacklevel=2)
                self.backend = "torch"
        if delta is None:
            delta = reference_steps(self.compiled, self.geometry, pre, post, self._state, w2d, mods, apply)
        if apply:  # as an optimizer step would: autograd refuses a graph that saw the old weight
            increment_version(weight)
        return delta.view_as(weight)

    # --- inspection -------------------------------------------------------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        """Traces and per-synapse states by name (canonical layout: pre ``[N, C, H, W]``, padded for a
        conv, a linear synapse's features as channels; post ``[N, J, Ho, Wo]``; per-synapse
        ``[N, out, fan_in]``); empty before the first ``step()``."""
        if self._state is None:
            return {}
        lr = self.compiled.lowered
        out = {k: self._state["pre"][i] for i, k in enumerate(lr.pre_traces)}
        out.update({k: self._state["post"][i] for i, k in enumerate(lr.post_traces)})
        out.update({k: self._state["synapse"][i] for i, k in enumerate(lr.synapse_states)})
        return out

    def __repr__(self) -> str:
        return f"Learner({self.rule!r} on {self.name}, {self.post_name})"


def plasticity_entries(node_of_module: Mapping[int, str]) -> list[dict[str, Any]]:
    """``meta["plasticity"]`` entries for the learners attached to traced modules
    (``node_of_module``: ``id(module)`` -> node id); used by ``snnir.trace``."""
    entries = []
    for module, ref in list(_ATTACHED.items()):
        learner = ref()
        if learner is None or id(module) not in node_of_module:
            continue
        post = node_of_module.get(id(learner.post))
        if post is None:
            raise TraceError(f"{learner!r}: the post-synaptic module {type(learner.post).__name__} is not part of the "
                             "traced model, so the graph cannot name it")
        entries.append({"synapse": node_of_module[id(module)], "post": post, **learner.rule.to_dict()})
    return entries


def attach_learners(module: GraphModule, graph: Any) -> dict[str, Learner]:
    """One ``Learner`` per plasticity entry of ``graph`` on its compiled ``module``."""
    return {p.synapse: Learner(module, p.rule, synapse=p.synapse, post=p.post) for p in plasticity(graph)}


__all__ = ["Learner", "attach_learners", "plasticity_entries"]
