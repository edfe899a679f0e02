"""Peer SNN frameworks' modules as frontend input: SpikingJelly, snnTorch and Norse.

Each framework has one small module here that registers, per module class, how a peer module
becomes snnir: an equivalent ``snnir.nn`` module (traced in its place, with the peer's weights),
a chain of IR ops, or "map it as the torch layer it subclasses". The torch frontend asks this
registry about every module whose class comes from a peer package (``spikingjelly``,
``snntorch``, ``norse``); a framework's module is imported on first use, so the peers stay optional.

Classes match exactly: a subclass of a registered class (SpikingJelly's ``ILIFNode`` subclasses
``LIFNode``) is accepted only if it overrides nothing but ``__init__``/``extra_repr``. A peer module
with no mapping stops tracing with its module path, class and the parameter that has no equivalent.

Example (the README's "Bring your SpikingJelly / snnTorch / Norse model" runs more)::

    import torch, snnir
    from spikingjelly.activation_based import layer, neuron
    net = torch.nn.Sequential(layer.Linear(4, 3), neuron.LIFNode(tau=2.0))
    [n.op for n in snnir.trace(net, torch.rand(5, 2, 4))]   # ['input', 'linear', 'neuron', 'output']
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from snnir.errors import TraceError

OpMapping = tuple[str, dict[str, Any], dict[str, Any]]  # (op, attrs, params)

# top-level package -> the snnir module holding its mappings
FRAMEWORKS = {"spikingjelly": "snnir.frontends.peers.spikingjelly",
              "snntorch": "snnir.frontends.peers.snntorch",
              "norse": "snnir.frontends.peers.norse"}
# methods a subclass may define and still behave as its registered base
_HARMLESS = {"__init__", "extra_repr", "__repr__", "__doc__", "__module__", "__qualname__", "__annotations__",
             "__dict__", "__weakref__", "__slots__", "__firstlineno__", "__static_attributes__"}


@dataclass
class Conversion:
    """What a peer module becomes: exactly one of ``module``, ``ops`` and ``torch_class`` is set.

    ``module``: a ``snnir.nn`` (or torch) module traced in the peer's place; ``ops``: IR ops
    emitted in a chain; ``torch_class``: the torch layer class the module is mapped as (it
    subclasses it: SpikingJelly's ``layer.Conv2d`` is a ``nn.Conv2d`` that folds time).
    ``single_step``: the inside runs one step at a time on ``[N, ...]`` (SpikingJelly's
    containers), so torch dims there count from the batch axis. ``outputs``: names of the tuple
    the peer module returns (``("spk", "mem")``); only the first (the spikes) is traced.
    """

    module: nn.Module | None = None
    ops: list[OpMapping] | None = None
    torch_class: type | None = None
    single_step: bool = False
    outputs: tuple[str, ...] = ()


@dataclass
class Context:
    """What a converter may need: the module's path (for errors) and its input shapes (per sample)."""

    path: str
    cls: str
    shapes: Callable[[], list[tuple[int, ...]]] = list

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample shapes of the module's inputs (inferred on demand from the graph so far)."""
        return self.shapes()

    def error(self, msg: str) -> TraceError:
        return TraceError(f"module '{self.path}' ({self.cls}): {msg}")

    def refuse(self, param: str, value: Any, why: str) -> TraceError:
        """The error for a parameter with no snnir equivalent."""
        return self.error(f"{param}={value!r} has no snnir equivalent: {why}")


Converter = Callable[[nn.Module, Context], Conversion]


@dataclass
class Framework:
    """One peer framework's registrations."""

    name: str
    converters: dict[type, Converter] = field(default_factory=dict)
    # predicates: is the module stateful (a leaf the tracer must not enter)? its step mode?
    stateful: Callable[[nn.Module], bool] = lambda m: False
    step_mode: Callable[[nn.Module], str | None] = lambda m: None
    # container classes whose children are not visited for step modes (they run single steps)
    containers: tuple[type, ...] = ()


_LOADED: dict[str, Framework] = {}


def register(framework: Framework, *classes: type) -> Callable[[Converter], Converter]:
    """Decorator: ``framework`` converts modules of exactly ``classes`` with the function."""
    def wrap(fn: Converter) -> Converter:
        for cls in classes:
            framework.converters[cls] = fn
        return fn
    return wrap


def framework_of(m: nn.Module) -> Framework | None:
    """The (loaded) framework ``m``'s class comes from, or ``None`` for non-peer modules."""
    package = type(m).__module__.split(".")[0]
    if package not in FRAMEWORKS:
        return None
    if package not in _LOADED:
        _LOADED[package] = importlib.import_module(FRAMEWORKS[package]).FRAMEWORK
    return _LOADED[package]


def _converter(fw: Framework, m: nn.Module) -> tuple[Converter | None, str | None]:
    """The converter of ``m``'s class, or of a registered base it subclasses without overriding
    behaviour; else ``(None, reason)``."""
    for cls in type(m).__mro__:
        if cls in fw.converters:
            for sub in type(m).__mro__[:type(m).__mro__.index(cls)]:
                changed = sorted(k for k, v in vars(sub).items() if k not in _HARMLESS and callable(v))
                if changed:
                    return None, (f"it subclasses {cls.__module__}.{cls.__name__} and redefines "
                                  f"{changed}, so its dynamics may differ")
            return fw.converters[cls], None
    return None, None


def is_leaf(m: nn.Module) -> bool:
    """Whether the tracer stops at ``m`` (a peer module it converts, or a stateful one it must refuse)."""
    fw = framework_of(m)
    if fw is None:
        return False
    conv, reason = _converter(fw, m)
    return conv is not None or reason is not None or fw.stateful(m)


def convert(m: nn.Module, path: str, shapes: Callable[[], list[tuple[int, ...]]] = list) -> Conversion:
    """``m``'s conversion; ``TraceError`` naming the module path, class and the missing equivalent.

    ``shapes()`` returns the per-sample shapes of ``m``'s inputs (for converters that need them).
    """
    fw = framework_of(m)
    assert fw is not None
    cls = f"{type(m).__module__}.{type(m).__qualname__}"
    ctx = Context(path, cls, shapes)
    conv, reason = _converter(fw, m)
    if conv is None:
        known = ", ".join(sorted(c.__name__ for c in fw.converters))
        raise ctx.error(f"no snnir equivalent{': ' + reason if reason else ''}. {fw.name} modules snnir "
                        f"maps: {known}")
    return conv(m, ctx)


def is_stateful(m: nn.Module) -> bool:
    """Whether ``m`` is a peer module holding state (so calling it twice would split the state)."""
    fw = framework_of(m)
    return fw is not None and fw.stateful(m)


def step_modes(model: nn.Module) -> set[str]:
    """Step modes ('s'/'m') of the peer modules in ``model``, outside peer containers."""
    found: set[str] = set()

    def visit(m: nn.Module) -> None:
        fw = framework_of(m)
        if fw is not None:
            mode = fw.step_mode(m)
            if mode is not None:
                found.add(mode)
            if isinstance(m, fw.containers):
                return
        for child in m.children():
            visit(child)

    visit(model)
    return found


@dataclass(frozen=True)
class TupleOutput:
    """A traced peer module that returns a tuple: ``node`` holds its first element (the spikes)."""

    node: str
    names: tuple[str, ...]
    path: str

    def select(self, index: Any) -> str | Unusable:
        """Element ``index``: the spikes' node id, or a marker that errors if it is used."""
        if index == 0:
            return self.node
        name = self.names[index] if isinstance(index, int) and 0 <= index < len(self.names) else index
        return Unusable(f"output {name!r} (index {index!r}) of module '{self.path}' (which returns {self.names}) "
                        "has no IR form: a traced neuron outputs its spikes only. Record states with snnir's monitors")

    def why(self, what: str) -> str:
        return (f"{what} is the tuple {self.names} that module '{self.path}' returns; take its spikes with [0] "
                "(or construct snnTorch neurons with init_hidden=True)")


@dataclass(frozen=True)
class Unusable:
    """A value in the traced model that has no IR form; using it is an error (unused, it is fine)."""

    message: str

    def why(self, what: str) -> str:
        return f"{what} is {self.message}"
