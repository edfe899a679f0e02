"""How a neuron module calls its fused kernel: a plan per input signature, cached on the module.

Everything a call needs that does not change from call to call -- the configuration and its
compiled kernel, the input's memory order (``layout``), the kernel's uniforms (``prm``, the
per-neuron ``arrays``), the initial state -- is computed once per signature (input shape, strides,
dtype, device; the module's options and parameter values; tensor parameters by identity and
version counter) and kept in a ``Plan``. A call with the same signature then costs a tuple
comparison, the output allocations and one kernel call: under ``no_grad`` the C kernel is called
directly (no dispatcher, no autograd node); with gradients through a small ``autograd.Function``.
Under ``torch.compile`` (or with tensor subclasses) the plan is rebuilt per trace and the
``snnir::neuron_forward`` op is called, so the traced graph holds one op per layer.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from typing import Any

import torch

from . import buffers, layout, native_call
from .fused import CpuKernel, _reduce_learn, _tile, compute_dtype, config, cpu_kernel, initial_rows, neuron_forward
from .threads import kernel_threads


@dataclass
class Plan:
    sig: tuple
    key: str
    kernel: CpuKernel | None  # called directly in eager mode; None: through the op
    copy: bool  # the input is made contiguous first
    order: tuple[int, ...] | None  # memory order of the input's axes (None: contiguous)
    inv: tuple[int, ...] | None
    state_inv: list[int] | None  # inverse order of one state's axes [B, *sample]
    pshape: torch.Size  # the input's shape in memory order
    T: int
    N: int
    M: int  # neurons per sample
    tile: int
    sample: tuple[int, ...]
    prm: torch.Tensor
    arrays: torch.Tensor
    init: torch.Tensor | None  # [S, N] initial values, broadcast (None: per-neuron, computed per call)
    init_rows: tuple | None  # init as the kernels read it (``initial_rows``)
    no_learn: torch.Tensor
    want_v: bool
    sdtype: torch.dtype
    learned: bool  # the configuration has learned parameters
    learn_names: tuple[str, ...]  # their names
    S: int  # states per neuron
    state_shape: tuple[int, ...] = ()  # one state in memory order (``pshape[1:]``)
    shape: tuple[int, ...] = ()
    fast: bool = False  # the inference fast path applies (``infer``)
    bwd_tile: int = 0
    head: tuple = ()  # ``sig`` without the configuration key: what ``signature`` returns
    step_sig: tuple | None = None  # the signature of one step ``x`` of a ``T = 1`` fast plan (single-step mode)
    # The kernel calls' constant arguments, as ctypes values: ctypes passes an argument that already
    # has its declared type as it is, where a Python int is converted per call (~0.05 us each).
    fwd_head: tuple = ()  # (T, N, M, tile)
    bwd_head: tuple = ()  # (T, N, M, backward tile)
    tail: tuple = ()  # (prm pointer, arrays pointer)
    init_args: tuple = ()  # the broadcast initial state as (pointer, row stride, column stride)
    fwd_threads: Any = 1
    bwd_threads: Any = 1
    pooled: bool = False  # outputs large enough for the buffer pool (``buffers``)
    state_args: tuple = ()  # ``new_empty(*state_args)``: the final state, [S, N] or (S = 1) one state's shape
    # the training call's handle in the C++ extension (``native_call``): None until it is loaded,
    # False where this plan takes the Python ``_DirectNeuron`` (pooled outputs, a voltage sequence)
    native: Any = None

    def __post_init__(self) -> None:
        self.state_shape, self.shape = tuple(self.pshape[1:]), tuple(self.pshape)
        # positional sizes: torch.empty(*sizes) costs half of torch.empty(sizes) (a 0-d state: ((),))
        self.state_args = (self.state_shape or ((),)) if self.S == 1 else (self.S, self.N)
        self.head = self.sig[:-1]
        if self.kernel is None:
            self.native = False
            return
        T, N = self.T, self.N
        tile = self.tile or _tile(N)
        self.bwd_tile = self.kernel.backward_tile(T, N)
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        self.fwd_head = (i64(T), i64(N), i64(self.M), i64(tile))
        self.bwd_head = (i64(T), i64(N), i64(self.M), i64(self.bwd_tile))
        self.tail = (ptr(self.prm.data_ptr()), ptr(self.arrays.data_ptr()))
        if self.init_rows is not None:
            self.init_args = (ptr(self.init_rows[0].data_ptr()), i64(1), i64(0))
        self.fwd_threads = ctypes.c_int(kernel_threads(T * N, -(-N // tile)))
        self.bwd_threads = ctypes.c_int(kernel_threads(T * N, -(-N // self.bwd_tile)))
        self.pooled = T * N * self.kernel.dtype.itemsize >= buffers.MIN_BYTES
        if self.pooled or self.want_v:  # large calls: the Python path's cost is negligible there
            self.native = False
        if self.order is None and not self.copy and not self.want_v and self.init is not None:
            self.fast = True
            if T == 1 and self.sig:  # x.unsqueeze(0) of a step x matches exactly when x's shape and strides do
                self.step_sig = (self.sig[0][1:], self.sig[1][1:], *self.head[2:])

    def empty(self, dtype: torch.dtype) -> torch.Tensor:
        """An output sequence in the input's memory order (``pshape``): pooled when large."""
        return buffers.empty(self.shape, dtype) if self.pooled else torch.empty(self.shape, dtype=dtype)

    def like(self, x: torch.Tensor) -> torch.Tensor:
        """An output sequence laid out as ``x`` (dense in the plan's memory order): pooled when large."""
        if self.pooled:
            t = buffers.empty(self.shape, x.dtype)
            return t if self.inv is None else t.permute(self.inv)
        return torch.empty_like(x)  # keeps x's strides, and costs half of torch.empty(shape, dtype=...)

    def new_state(self) -> torch.Tensor:
        """The final state's buffer: ``[S, N]`` rows, or for one state that state in memory order."""
        return self.no_learn.new_empty(*self.state_args)


def signature(module: Any, x: torch.Tensor) -> tuple:
    """What a plan depends on (cheap: no tensor is read)."""
    d = module.__dict__
    tensors = module._tensor_params
    if tensors:
        own = {**module._parameters, **module._buffers}
        tsig = tuple((id(t), t._version) for t in (own[n] for n in tensors))
    else:
        tsig = ()
    threads = 0 if torch.compiler.is_compiling() else torch.get_num_threads()
    return (x.shape, x.stride(), x.dtype, x.device, threads, module.fused, d.get("v_threshold"),
            d.get("v_reset"),
            tuple(module.params.values()), module.detach_reset, type(module.surrogate),
            tuple(module.surrogate.values.values()), tuple(module.options.values()), tsig,
            module.store_v_seq and module.step_mode == "m")


def make_plan(module: Any, key: str, x_seq: torch.Tensor, params: dict[str, Any], sig: tuple) -> Plan:
    cfg = config(key)
    sdtype = compute_dtype(x_seq.dtype)
    order = layout.storage_order(x_seq, batch_first=cfg.n_arrays > 0)
    copy = order is None and not x_seq.is_contiguous()  # not dense in any order: one copy per call
    xp = x_seq if order is None else x_seq.permute(order)
    sample = tuple(x_seq.shape[2:])
    s_order = layout.sample_order(order)
    prm, arrays = module._pack(cfg, params, sdtype, sample, s_order)
    values = module.equations().initial_values(params)
    init = init_rows = None
    N = math.prod(xp.shape[1:])
    if all(not isinstance(a, torch.Tensor) for a in values):
        column = torch.tensor(values, dtype=sdtype, device=x_seq.device)
        init, init_rows = column.view(len(values), 1).expand(len(values), N), (column, 1, 0)
    direct = None
    if x_seq.device.type == "cpu" and type(x_seq) is torch.Tensor and not torch.compiler.is_compiling():
        direct = cpu_kernel(key, x_seq.dtype)
    inv = None if order is None else layout.inverse(order)
    return Plan(sig=sig, key=key, kernel=direct, copy=copy, order=order, inv=inv,
                state_inv=None if inv is None else [d - 1 for d in inv[1:]], pshape=xp.shape, T=x_seq.shape[0],
                N=N, M=arrays.shape[1], tile=0 if direct is None else _tile(N), sample=sample, prm=prm,
                arrays=arrays, init=init, init_rows=init_rows,
                no_learn=arrays.new_empty((0, arrays.shape[1]), dtype=sdtype), S=len(values),
                want_v=module.store_v_seq and module.step_mode == "m", sdtype=sdtype,
                learned=bool(cfg.step.learnable), learn_names=tuple(cfg.step.learnable))


def infer(module: Any, plan: Plan, x: torch.Tensor) -> torch.Tensor | None:
    """The inference fast path (streaming: one step, batch 1, where Python is all the cost): a
    contiguous input, no gradient, no voltage sequence; ``None`` where it does not apply. ``x``:
    the sequence, or one step of a ``T = 1`` plan (the spikes take its shape)."""
    if not plan.fast or (torch.is_grad_enabled() and (x.requires_grad or plan.learned)):
        return None
    buffers = module._buffers
    v = buffers["v"]
    if v is None:
        s0 = plan.init_args
    else:
        # the rows must be this plan's (a plan made for another shape, whose call then refused the
        # old state, must not read it) and still the module's state (not replaced by the user)
        rows = module.__dict__.get("_rows")
        if rows is None or rows[2] is not plan or rows[0].requires_grad and torch.is_grad_enabled() or \
                (v is not rows[1][0] if plan.S == 1 else any(buffers[k] is not r for k, r in
                                                             zip(module.model.state, rows[1]))):
            return None
        s0 = (rows[0].data_ptr(), plan.N, 1)
    spikes = torch.empty_like(x)
    state = plan.new_state()  # one state: allocated in its own shape, kept as it is (no view per call)
    views = (state,) if plan.S == 1 else [r.view(plan.state_shape) for r in state.unbind(0)]
    plan.kernel._fwd(*plan.fwd_head, x.data_ptr(), spikes.data_ptr(), *s0, state.data_ptr(), None, *plan.tail,
                     plan.fwd_threads)
    for k, value in zip(module.model.state, views):
        buffers[k] = value
    module.__dict__["_rows"] = (state, views, plan)
    return spikes


def run_plan(module: Any, plan: Plan, x_seq: torch.Tensor, params: dict[str, Any] | None,
             affine: torch.Tensor | None = None) -> torch.Tensor:
    """One fused call of ``module`` on ``x_seq`` (which matches ``plan``); stores the final state.
    ``affine``: ``[2, M]`` per-neuron input scale and shift rows (configurations with ``input_affine``)."""
    if plan.copy:
        x_seq = x_seq.contiguous()
    state0 = _state0(module, plan, x_seq, params)
    arrays = None if affine is None else torch.cat([plan.arrays, affine])
    learn = _learn(module, plan, params) if plan.learned else None
    kernel = plan.kernel
    if kernel is not None and torch.is_grad_enabled() and (x_seq.requires_grad or state0.requires_grad
                                                           or learn is not None and learn.requires_grad):
        native = plan.native
        if native is None:
            native = plan.native = native_call.plan_handle(plan)
        if native and not torch._C._are_functorch_transforms_active():
            out = native(x_seq, None if state0 is plan.init else state0, learn, arrays)
            if out is not NotImplemented:  # else forward-mode AD: the Python Function below
                _store(module, plan, out[1], own_shape=True)
                return out[0]
        out = _direct(x_seq, state0, learn, arrays, plan)
        spikes, state = out[0], out[1]
        v_seq = out[2] if plan.want_v else None
        _store(module, plan, state, own_shape=True)
        if plan.want_v:
            module.v_seq = _unrows(v_seq, plan)
        return spikes
    arrays = plan.arrays if arrays is None else arrays
    x2 = x_seq.view(plan.T, plan.N) if plan.order is None else x_seq.permute(plan.order).reshape(plan.T, plan.N)
    if state0 is not plan.init:
        state0 = state0.reshape(plan.S, plan.N)  # one state may be kept in its own shape (``Plan.new_state``)
    if kernel is not None:
        s0 = plan.init_rows if state0 is plan.init else initial_rows(state0, plan.sdtype)
        spikes, state, v_seq = kernel.run_forward(x2, s0, plan.prm, arrays, plan.want_v, plan.M, plan.tile)
    else:
        learn = plan.no_learn if learn is None else learn
        spikes, state, v_seq = neuron_forward(x2, state0, plan.prm, arrays, learn, plan.key, plan.want_v)
    spikes = _unrows(spikes, plan)
    _store(module, plan, state)
    if plan.want_v:
        module.v_seq = _unrows(v_seq, plan)
    return spikes


def _unrows(t: torch.Tensor, plan: Plan) -> torch.Tensor:
    """Kernel rows ``[T, N]`` viewed as the input's shape and layout."""
    t = t.view(plan.shape)
    return t if plan.inv is None else t.permute(plan.inv)


class _DirectNeuron(torch.autograd.Function):
    """The eager training call: the C kernels on the input as it is laid out in memory.

    Per-call cost is most of a small layer's time (streaming, small batches), so the call passes
    the kernels only pointers and the plan's precomputed arguments: inputs ``x_seq`` (dense in the
    plan's memory order), ``state0`` (``[S, N]`` rows, or ``plan.init``), ``learn`` (``None``
    without learned parameters), ``arrays`` (``None``: the plan's); outputs allocated directly in
    the input's memory order, so no output is a view unless the layout is permuted."""

    @staticmethod
    def forward(ctx, x_seq, state0, learn, arrays, plan):  # type: ignore[override]
        ctx.set_materialize_grads(False)
        if state0 is plan.init:  # broadcast initial values: the plan's column, nothing to save
            s0 = plan.init_args
            ctx.save_for_backward(x_seq)
        else:  # the last call's state (its rows, or one state in its own shape), or stacked rows
            rows, row, col = (state0, plan.N, 1) if state0.dtype == plan.sdtype and state0.is_contiguous() else \
                initial_rows(state0.reshape(plan.S, plan.N), plan.sdtype)
            s0 = (rows.data_ptr(), row, col)
            ctx.save_for_backward(x_seq, rows)
        if arrays is None:
            tail = plan.tail
        else:  # per-call rows (input affine): kept alive for the backward
            ctx.arrays, tail = arrays, (plan.tail[0], arrays.data_ptr())
        # one attribute: the backward's constants (each ctx attribute costs a dict write and read)
        ctx.call = (plan, s0, tail, state0.shape, None if learn is None else learn.shape)
        spikes = torch.empty_like(x_seq) if not plan.pooled else plan.like(x_seq)
        state = plan.new_state()
        v_seq = plan.empty(plan.sdtype) if plan.want_v else None
        plan.kernel._fwd(*plan.fwd_head, x_seq.data_ptr(), spikes.data_ptr(), *s0, state.data_ptr(),
                         None if v_seq is None else v_seq.data_ptr(), *tail, plan.fwd_threads)
        if v_seq is None:
            return spikes, state
        ctx.mark_non_differentiable(v_seq)
        return spikes, state, v_seq

    @staticmethod
    def backward(ctx, g_spikes, g_state, *_):  # type: ignore[override]
        if torch.is_grad_enabled():  # create_graph=True: the kernels' gradients are not differentiable
            return _DirectNeuron._backward_once(ctx, g_spikes, g_state)
        return _DirectNeuron._backward(ctx, g_spikes, g_state)

    @staticmethod
    def _backward(ctx, g_spikes, g_state):
        plan, s0, tail, s0_shape, learn_shape = ctx.call
        x = ctx.saved_tensors[0]
        if g_spikes is None:
            g, scalar = torch.zeros(plan.shape, dtype=x.dtype), 0
        else:
            g = g_spikes if plan.order is None else g_spikes.permute(plan.order)
            if g.dtype != x.dtype:
                g = g.to(x.dtype)
            # a broadcast scalar gradient (loss = spikes.sum()) is read as one value, not materialized
            scalar = int(not any(g.stride()))
            if not scalar:
                g = g.contiguous()
        if g_state is not None:
            g_state = g_state.to(plan.sdtype).contiguous()
        gx = torch.empty_like(x) if not plan.pooled else plan.like(x)
        gs0 = plan.no_learn.new_empty(s0_shape) if ctx.needs_input_grad[1] else None
        gl = None if learn_shape is None else torch.empty(learn_shape[0] if len(learn_shape) == 2 else 1, plan.N,
                                                          dtype=torch.float64)
        failed = plan.kernel._bwd(*plan.bwd_head, g.data_ptr(), scalar, None if g_state is None else g_state.data_ptr(),
                                  x.data_ptr(), *s0, gx.data_ptr(), None if gs0 is None else gs0.data_ptr(),
                                  None if gl is None else gl.data_ptr(), *tail, plan.bwd_threads)
        if failed:
            raise MemoryError(f"fused neuron backward: could not allocate a {plan.bwd_tile}-neuron recompute buffer")
        if gl is not None and len(learn_shape) == 2:  # learn: [L, M] rows
            gl = _reduce_learn(gl, learn_shape[0], learn_shape[1], x)
        # else learn is a one-element parameter itself (``_learn``): its gradient [1, N] in float64 is
        # summed to the parameter's shape and cast by autograd's output check (in C++: a tiny
        # gradient costs microseconds per torch call from Python)
        return gx, gs0, gl, None, None

    _backward_once = staticmethod(torch.autograd.function.once_differentiable(_backward.__func__))


# ``Function.apply`` in Python binds arguments and unwraps functorch's dead wrappers before the C
# ``apply``; outside functorch transforms (every eager call) that costs microseconds for nothing.
_c_apply = super(torch.autograd.Function, _DirectNeuron).apply


def _direct(x_seq, state0, learn, arrays, plan):
    if torch._C._are_functorch_transforms_active():
        return _DirectNeuron.apply(x_seq, state0, learn, arrays, plan)
    return _c_apply(x_seq, state0, learn, arrays, plan)


def _state0(module: Any, plan: Plan, x_seq: torch.Tensor, params: dict[str, Any] | None) -> torch.Tensor:
    """The state before this call as kernel rows ``[S, N]``: the rows the last call returned when
    the state buffers are still theirs (no copy), or the initial state, broadcast (stride 0)."""
    buffers = module._buffers
    names = module.model.state
    v = buffers["v"]
    if v is None:
        if plan.init is not None:
            return plan.init
        values = module.equations().initial_values(params if params is not None else module._param_env(x_seq))
        full = [torch.as_tensor(a, dtype=plan.sdtype, device=x_seq.device).expand(x_seq.shape[1:]) for a in values]
        return torch.stack([_as_row(f, plan.order) for f in full])
    if v.shape != x_seq.shape[1:]:
        raise ValueError(f"{type(module).__name__}: input shape {tuple(x_seq.shape[1:])} differs from the state "
                         f"shape {tuple(v.shape)}; call snn.reset(net) between sequences")
    rows = module.__dict__.get("_rows")
    if rows is not None and rows[0].dtype == plan.sdtype and (rows[2] is plan or rows[2].order == plan.order) and \
            all(buffers[k] is r for k, r in zip(names, rows[1])):  # rows in this plan's memory order
        return rows[0]  # [S, N], or one state in its own shape (``Plan.new_state``)
    return torch.stack([_as_row(buffers[k].to(plan.sdtype), plan.order) for k in names])


def _as_row(t: torch.Tensor, order: tuple[int, ...] | None) -> torch.Tensor:
    """One state ``[B, *sample]`` as a kernel row in memory ``order`` (of ``[T, B, *sample]``)."""
    return (t if order is None else t.permute([d - 1 for d in order[1:]])).reshape(-1)


def _learn(module: Any, plan: Plan, params: dict[str, Any] | None) -> torch.Tensor:
    """The learned parameters as the op's ``learn`` argument (it carries their gradient back)."""
    learnable = [getattr(module, n) for n in plan.learn_names]
    if not learnable:
        return plan.no_learn
    M = plan.arrays.shape[1]
    if not torch.is_grad_enabled():
        return plan.no_learn.new_zeros(()).expand(len(learnable), M)
    if len(learnable) == 1 and learnable[0].numel() == 1 and learnable[0].dtype == plan.sdtype and plan.kernel:
        return learnable[0]  # the parameter itself (one element, any shape): no reshape node per call
    if all(p.numel() == 1 for p in learnable):  # [L, 1]: few autograd nodes
        return (learnable[0].reshape(1, 1) if len(learnable) == 1 else
                torch.stack([p.reshape(1) for p in learnable])).to(plan.sdtype)
    s_order = layout.sample_order(plan.order)
    return torch.stack([layout_rows(p.to(plan.sdtype).expand(plan.sample), s_order, M) for p in learnable])


def layout_rows(t: torch.Tensor, order: tuple[int, ...] | None, M: int) -> torch.Tensor:
    """A per-neuron tensor of one sample's shape as ``[M]`` in the sample axes' memory ``order``."""
    return (t if order is None else t.permute(order)).reshape(M)


def per_channel_rows(affine: tuple[torch.Tensor, torch.Tensor], plan: Plan) -> torch.Tensor:
    """Per-channel ``(scale, shift)`` ([C] each; channels: the sample's first axis) as ``[2, M]``."""
    sample = plan.sample
    view = (sample[0],) + (1,) * (len(sample) - 1)
    s_order = layout.sample_order(plan.order)
    M = plan.arrays.shape[1]
    return torch.stack([layout_rows(a.to(plan.sdtype).view(view).expand(sample), s_order, M) for a in affine])


def _store(module: Any, plan: Plan, state: torch.Tensor, own_shape: bool = False) -> None:
    """Keep the final states as the module's state tensors (views of the kernel's rows).
    ``own_shape``: ``state`` is ``Plan.new_state()``'s (one state in memory order when S = 1)."""
    shape = plan.state_shape
    if own_shape and plan.S == 1:
        views = [state if plan.state_inv is None else state.permute(plan.state_inv)]
    elif plan.state_inv is None:
        views = [row.view(shape) for row in state.unbind(0)] if state.shape[0] > 1 else [state.view(shape)]
    else:
        views = [row.view(shape).permute(plan.state_inv) for row in state.unbind(0)]
    buffers = module._buffers
    for k, value in zip(module.model.state, views):
        buffers[k] = value
    if not torch.compiler.is_compiling():
        module.__dict__["_rows"] = (state, views, plan)
