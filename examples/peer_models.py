"""Bring your SpikingJelly / snnTorch / Norse model: trace, compile, compare with the peer.

For each model (SpikingJelly's zoo at full size, plus snnTorch and Norse networks) this traces the
peer model into an snnir graph, compiles it back to torch, runs both on the same input and prints
the route (peer modules -> snnir ops), the output agreement and the gradient agreement (input and
first-layer weights). Needs the peers installed (``pip install --no-deps spikingjelly==2.0.0
snntorch==1.0.0 norse==1.1.0``); torchvision is not needed.

    python examples/peer_models.py            # all models (a few minutes on 2 CPU cores)
    python examples/peer_models.py --quick    # small inputs, no VGG
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch
from tqdm import tqdm

import snnir
from snnir.frontends import peers


def _spikingjelly_zoo(quick: bool):
    from spikingjelly.activation_based import functional, neuron, surrogate

    from snnir.frontends.peers.spikingjelly import import_zoo_module

    resnet, sew = import_zoo_module("spiking_resnet"), import_zoo_module("sew_resnet")
    vgg, plif = import_zoo_module("spiking_vgg"), import_zoo_module("parametric_lif_net")
    kw = {"surrogate_function": surrogate.ATan(), "detach_reset": True}
    side = 16 if quick else 32
    models = {
        "spiking_resnet18": (lambda: resnet.spiking_resnet18(spiking_neuron=neuron.IFNode, num_classes=10, **kw),
                             (2, 2, 3, side, side)),
        "sew_resnet18 (ADD)": (lambda: sew.sew_resnet18(cnf="ADD", spiking_neuron=neuron.IFNode, num_classes=10, **kw),
                               (2, 2, 3, side, side)),
    }
    if "mul" in snnir.ops.registered_ops():
        models["sew_resnet18 (IAND)"] = (lambda: sew.sew_resnet18(cnf="IAND", spiking_neuron=neuron.IFNode,
                                                                  num_classes=10, **kw), (2, 2, 3, side, side))
    if not quick:
        models["spiking_vgg11_bn"] = (lambda: vgg.spiking_vgg11_bn(spiking_neuron=neuron.LIFNode, num_classes=10),
                                      (2, 1, 3, 32, 32))
    if "reshape" in snnir.ops.registered_ops():  # their VotingLayer is reshape + avgpool1d + flatten
        plif_kw = {"spiking_neuron": neuron.ParametricLIFNode, **kw}
        models["PLIF MNISTNet"] = (lambda: plif.MNISTNet(channels=32, **plif_kw), (4, 2, 1, 28, 28))
        models["PLIF CIFAR10Net"] = (lambda: plif.CIFAR10Net(channels=32, **plif_kw), (4, 2, 3, 32, 32))
        models["PLIF DVSGestureNet"] = (lambda: plif.DVSGestureNet(channels=16, **plif_kw), (4, 1, 2, 128, 128))
    for name, (build, shape) in models.items():
        torch.manual_seed(0)
        net = build()
        functional.set_step_mode(net, "m")
        x = torch.rand(shape) * 2
        # trained-looking BatchNorm (this input's statistics, scales that cross the threshold), so
        # that every stage spikes; VGG's N(0, 0.01) classifier init would leave its LIF layers silent
        norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        with torch.no_grad():
            for m in norms:
                m.momentum = 1.0
                m.weight.uniform_(1.0, 2.0)
                m.bias.uniform_(0.0, 0.5)
            if name == "spiking_vgg11_bn":
                for m in net.classifier:
                    if isinstance(m, torch.nn.Linear):
                        m.weight.mul_(30)
            functional.reset_net(net)
            net.train()(x)
        for m in norms:
            m.momentum = 0.1
        yield name, net.eval(), x, lambda n, x: (functional.reset_net(n), n(x))[1], "m"


def _snntorch_and_norse():
    import norse.torch as norse
    import snntorch
    from snntorch import utils

    def steps(net, x):
        utils.reset(net)
        return torch.stack([net(xt) for xt in x])

    def norse_steps(net, x):
        state, out = None, []
        for xt in x:
            y, state = net(xt, state)
            out.append(y)
        return torch.stack(out)

    torch.manual_seed(0)
    st = torch.nn.Sequential(torch.nn.Conv2d(2, 8, 3, padding=1), snntorch.Leaky(beta=0.9, init_hidden=True),
                             torch.nn.Flatten(), torch.nn.Linear(8 * 16 * 16, 64),
                             snntorch.RLeaky(beta=0.8, linear_features=64, init_hidden=True),
                             torch.nn.Linear(64, 10), snntorch.Synaptic(alpha=0.8, beta=0.9, init_hidden=True))
    yield "snnTorch conv/recurrent", st, torch.rand(20, 4, 2, 16, 16) * 2, steps, "s"
    nr = norse.SequentialState(torch.nn.Conv2d(2, 8, 3, padding=1), norse.LIFBoxCell(), torch.nn.Flatten(),
                               torch.nn.Linear(8 * 16 * 16, 64), norse.LIFCell(), torch.nn.Linear(64, 10),
                               norse.LICell())
    with torch.no_grad():
        nr[0].weight.mul_(20)
        nr[3].weight.mul_(40)
    yield "Norse conv/LIF/LI", nr, torch.rand(40, 4, 2, 16, 16), norse_steps, "s"


def _route(net: torch.nn.Module, graph: snnir.Graph) -> str:
    peer = Counter(type(m).__name__ for m in net.modules()
                   if peers.is_leaf(m) and not isinstance(m, torch.nn.Sequential))  # containers aside
    ops = Counter(n.op if n.op != "neuron" else f"neuron:{n.attrs['model']}" for n in graph
                  if n.op not in ("input", "output"))

    def fmt(c: Counter) -> str:
        return ", ".join(f"{k} x{v}" for k, v in c.most_common())

    return f"{fmt(peer) or '(torch layers only)'}  ->  {fmt(ops)}"


def compare(name, net, x, run_peer, step_mode):
    graph = snnir.trace(net, x)
    compiled = snnir.compile(graph, step_mode=step_mode)
    first = next(m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    key = next(k for k, m in net.named_modules() if m is first).replace(".", "_")
    key = next(n.id for n in graph if n.id.endswith(key) and n.op in ("conv2d", "linear"))
    counts = [0, 0]  # spikes, neuron outputs: how much of the network the comparison exercises

    def count(module, inputs, output):
        counts[0] += int(output.detach().sum())
        counts[1] += output.numel()

    for neuron in compiled.neurons().values():
        neuron.register_forward_hook(count)
    results = []
    for model in (net, compiled):
        net.zero_grad()
        xi = x.clone().requires_grad_()
        y = run_peer(model, xi) if model is net else (
            model(xi) if step_mode == "m" else torch.stack([model(xt) for xt in xi.unbind(0)]))
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        weight = first.weight if model is net else compiled.layers[compiled._key[key]].weight
        results.append((y.detach(), xi.grad, weight.grad))
    (y_ref, gx_ref, gw_ref), (y, gx, gw) = results
    rel = max(float((gx - gx_ref).abs().max() / gx_ref.abs().max()),
              float((gw - gw_ref).abs().max() / gw_ref.abs().max()))
    what = "spikes" if bool(((y_ref == 0) | (y_ref == 1)).all()) else "outputs"
    same = "identical" if torch.equal(y, y_ref) else f"max abs diff {float((y - y_ref).abs().max()):.2e}"
    agreement = (f"{what} {same} (|y| <= {float(y_ref.abs().max()):.3g}; {counts[0]} spikes in "
                 f"{counts[1]} neuron outputs, {100 * counts[0] / max(counts[1], 1):.1f}%)")
    return {"model": name, "route": _route(net, graph), "agreement": agreement, "gradient": f"max rel diff {rel:.1e}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, no VGG")
    args = parser.parse_args()
    cases = list(_spikingjelly_zoo(args.quick)) + list(_snntorch_and_norse())
    rows = [compare(*case) for case in tqdm(cases, desc="models")]
    for row in rows:
        print(f"\n{row['model']}\n  route:     {row['route']}\n  agreement: {row['agreement']}\n"
              f"  gradients: {row['gradient']}")


if __name__ == "__main__":
    main()
