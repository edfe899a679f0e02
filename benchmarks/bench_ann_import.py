"""The five reference ANNs at full size: import through both routes, agreement with onnxruntime,
and ANN-to-SNN conversion.

    python benchmarks/bench_ann_import.py [--px 224] [--models resnet18 vgg11 ...] [--T 32 64]

For ConvNeXt-T, MobileNetV2, ResNet-18, SqueezeNet 1.1 and VGG-11 (tests/ann_zoo.py: plain torch
modules with torchvision's layer layout and parameter counts; no weights can be downloaded here, so
each network is seeded and its BatchNorm statistics are set by a few training-mode batches, as a
trained network's are):

- torch route: ``snnir.frontends.from_torch_ann`` (the torch.fx tracer) -> ``snnir.compile``;
- ONNX route: ``torch.onnx.export(dynamo=False)`` (opset 20) -> ``snnir.frontends.from_onnx`` -> compile;
- both against onnxruntime on the same file: the largest error relative to the largest output;
- conversion: ``snnir.convert`` (99.9th-percentile calibration on ``--calib`` images), the SNN run
  for each T on ``--snn-images`` of the compared images, its time-averaged output against the ANN's logits
  (mean cosine, the same centred per sample, top-1 agreement); networks with non-convertible ops
  report the refusal. The networks are untrained, so their logits differ little between classes:
  the centred cosine is the informative figure, top-1 agreement over a few images is noisy.

Results go to benchmarks/bench_ann_import.json.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import snnir
from snnir import nn as snn
from snnir.errors import GraphError
from snnir.frontends import from_onnx, from_torch_ann

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from ann_zoo import ZOO  # noqa: E402


def _prepared(name: str, px: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = ZOO[name]()
    model.train()
    with torch.no_grad():  # BatchNorm running statistics of the data, as after training
        for _ in range(3):
            model(torch.rand(8, 3, px, px))
    return model.eval()


def _onnx(model: torch.nn.Module, x: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, x[:1], buf, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    return buf.getvalue()


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def measure(name: str, px: int, steps: list[int], images: int, calib: int, snn_images: int) -> dict:
    import onnx
    import onnxruntime as ort

    model = _prepared(name, px)
    x = torch.rand(images, 3, px, px, generator=torch.Generator().manual_seed(1))
    row: dict = {"model": name, "px": px, "params": sum(p.numel() for p in model.parameters())}
    t = time.perf_counter()
    proto = _onnx(model, x)
    row["onnx_export_s"] = time.perf_counter() - t
    ref = ort.InferenceSession(proto, providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        torch_out = model(x).numpy()
    t = time.perf_counter()
    traced = from_torch_ann(model, x)
    row["trace_s"] = time.perf_counter() - t
    t = time.perf_counter()
    imported = from_onnx(onnx.load_from_string(proto))
    row["onnx_import_s"] = time.perf_counter() - t
    row["nodes_traced"], row["nodes_imported"] = len(traced), len(imported)
    with torch.no_grad():
        row["torch_route_vs_ort"] = _rel(snnir.compile(traced, step_mode="s")(x).numpy(), ref)
        row["torch_route_vs_torch"] = _rel(snnir.compile(traced, step_mode="s")(x).numpy(), torch_out)
        row["onnx_route_vs_ort"] = _rel(snnir.compile(imported, step_mode="s")(x).numpy(), ref)
    row["torch_vs_ort"] = _rel(torch_out, ref)
    data = torch.rand(calib, 3, px, px, generator=torch.Generator().manual_seed(2))
    try:
        t = time.perf_counter()
        g = snnir.convert(model, calibration=list(data.split(8)), mode="99.9%", T=max(steps), progress=False)
        row["convert_s"] = time.perf_counter() - t
    except GraphError as e:
        row["conversion"] = f"refused: {str(e).split('. Rate-coded')[0]}"
        return row
    row["neurons"] = sum(n.op == "neuron" for n in g)
    m = snnir.compile(g).eval()
    row["conversion"] = {}
    for T in steps:
        m.reset()
        t = time.perf_counter()
        with torch.no_grad():
            out = m(snn.direct(x[:snn_images], T)).mean(0)
        ann = torch.from_numpy(torch_out[:snn_images])
        cos = torch.nn.functional.cosine_similarity(out, ann, dim=1).mean().item()
        # untrained logits share a large common part that inflates the cosine: also compare them
        # centred per sample (Pearson's r)
        centred = torch.nn.functional.cosine_similarity(out - out.mean(1, keepdim=True),
                                                        ann - ann.mean(1, keepdim=True), dim=1).mean().item()
        agree = (out.argmax(1) == ann.argmax(1)).float().mean().item()
        row["conversion"][T] = {"cosine": cos, "centred_cosine": centred, "top1_agreement": agree,
                                "run_s": time.perf_counter() - t}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--px", type=int, default=224)
    parser.add_argument("--models", nargs="+", default=sorted(ZOO))
    parser.add_argument("--T", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--images", type=int, default=4, help="images compared (ANN vs both routes)")
    parser.add_argument("--snn-images", type=int, default=2, help="of those, images the SNNs run on")
    parser.add_argument("--calib", type=int, default=16, help="calibration images")
    parser.add_argument("--out", default=str(HERE / "bench_ann_import.json"))
    args = parser.parse_args()
    rows = []
    for name in tqdm(args.models, desc="models"):
        rows.append(measure(name, args.px, args.T, args.images, args.calib, args.snn_images))
        tqdm.write(json.dumps(rows[-1]))
        Path(args.out).write_text(json.dumps({"px": args.px, "rows": rows}, indent=2))
    header = f"{'model':15} {'params':>10} {'torch route':>12} {'ONNX route':>11} {'torch':>9}"
    print(f"\n{header}  conversion (T: cosine/centred cosine/top-1)")
    for r in rows:
        conv = r["conversion"] if isinstance(r["conversion"], str) else "  ".join(
            f"T={T}: {c['cosine']:.4f}/{c.get('centred_cosine', float('nan')):.3f}/{c['top1_agreement']:.2f}"
            for T, c in r["conversion"].items())
        print(f"{r['model']:15} {r['params']:>10,} {r['torch_route_vs_ort']:>12.1e} {r['onnx_route_vs_ort']:>11.1e} "
              f"{r['torch_vs_ort']:>9.1e}  {conv}")
    print("(errors: largest absolute difference to onnxruntime over the largest |output|)")
    Path(args.out).write_text(json.dumps({"px": args.px, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
