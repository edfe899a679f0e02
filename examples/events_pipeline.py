"""The whole event-data pipeline offline: synthetic DVS events -> transforms -> frames -> batches -> SNN.

A bright vertical bar sweeps across a 32x32 event camera, left to right (class 0) or right to left
(class 1), at a random speed, height and start position; its leading edge fires ON events, its
trailing edge OFF events, and uniform background noise is added. Each recording is
denoised (background-activity filter) and downsampled to 16x16, integrated into frames of a fixed
duration (so recordings have different lengths), cached on disk as npz, batched with zero padding,
and fed to a small convolutional LIF network whose readout is averaged over the valid time steps
only (``padded_sequence_mask``). It must tell the two directions apart on held-out recordings.

    python examples/events_pipeline.py            # ~10 s on 2 CPU cores
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from snnir import nn as snn
from snnir.data import (
    Compose,
    Denoise,
    Downsample,
    FrameCache,
    frames_setting,
    make_events,
    pad_sequence_collate,
    padded_sequence_mask,
    to_frames,
)

SENSOR = (32, 32)  # (H, W)
WINDOW_US = 2_000  # one frame per 2 ms


def moving_bar(rng: np.random.Generator, direction: int) -> np.ndarray:
    """Events of one bar sweep (direction 0: left to right, 1: right to left), times in microseconds."""
    h, w = SENSOR
    speed = rng.uniform(0.8, 1.6)  # pixels per millisecond
    width = int(rng.integers(2, 5))
    top = int(rng.integers(0, h // 2))
    rows = np.arange(top, min(h, top + int(rng.integers(h // 3, h // 2 + 4))))
    start = int(rng.integers(-4, 6))  # column of the leading edge at t = 0
    columns = np.arange(max(start, 0), w + width)
    # The leading edge enters column c at (c - start) / speed: ON there; the trailing edge leaves
    # column c - width at the same moment: OFF there.
    crossing_us = (columns - start) / speed * 1000.0
    t, x, y, p = [], [], [], []
    for edge_column, polarity in ((columns, 1), (columns - width, 0)):
        inside = (edge_column >= 0) & (edge_column < w)
        for c, tc in zip(edge_column[inside], crossing_us[inside]):
            t.append(tc + rng.normal(0, 150, rows.size))  # sensor latency jitter per pixel
            x.append(np.full(rows.size, c))
            y.append(rows)
            p.append(np.full(rows.size, polarity))
    t, x, y, p = (np.concatenate(a) for a in (t, x, y, p))
    if direction == 1:
        x = w - 1 - x
    n_noise = int(rng.integers(50, 200))
    span = t.max()
    t = np.concatenate([t, rng.uniform(0, span, n_noise)])
    x = np.concatenate([x, rng.integers(0, w, n_noise)])
    y = np.concatenate([y, rng.integers(0, h, n_noise)])
    p = np.concatenate([p, rng.integers(0, 2, n_noise)])
    t = np.clip(t - t.min(), 0, None).astype(np.int64)
    return make_events(t, x, y, p)


def recordings(n: int, seed: int) -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    return [(moving_bar(rng, int(label)), int(label)) for label in labels]


def build_net() -> torch.nn.Sequential:
    """Conv(2->8, 5x5)-LIF on 16x16 frames, 2x2 max pooling, a linear readout of 2 classes."""
    surrogate = snn.surrogate.ATan(alpha=2.0)
    return snn.set_step_mode(torch.nn.Sequential(
        snn.Conv2d(2, 8, 5, padding=2), snn.LIF(tau=2.0, surrogate=surrogate),
        snn.MaxPool2d(4), snn.Flatten(), snn.Linear(8 * 4 * 4, 2)), "m")


def logits(net: torch.nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The readout averaged over each sample's own time steps (padding excluded)."""
    snn.reset(net)
    out = net(x.transpose(0, 1))  # [B, T, ...] -> [T, B, ...] -> [T, B, 2]
    mask = padded_sequence_mask(lengths, out.shape[0])[..., None]
    return (out * mask).sum(0) / lengths[:, None]


def run(n_train: int = 300, n_test: int = 200, epochs: int = 6, batch: int = 32, seed: int = 0,
        cache_root: str | None = None) -> dict[str, float]:
    start = time.perf_counter()
    torch.manual_seed(seed)
    transform = Compose([Denoise(filter_time=1_000), Downsample(2)])
    size = transform.output_size(SENSOR)
    setting = frames_setting(size, duration=WINDOW_US)
    cache = FrameCache(cache_root or tempfile.mkdtemp(prefix="snnir-frames-"))
    data = {"train": recordings(n_train, seed), "test": recordings(n_test, seed + 1)}
    kept = []

    def frames_of(sample_id: str) -> np.ndarray:  # sample ids are "train/17", "test/3", ...
        split, index = sample_id.split("/")
        events = data[split][int(index)][0]
        clean = transform(events)
        kept.append(clean.size / events.size)
        return to_frames(clean, size, duration=WINDOW_US)

    samples = {}
    for split, items in data.items():
        ids = [f"{split}/{i}" for i in range(len(items))]
        cache.prepare(ids, setting, frames_of, desc=f"frames ({split})")  # a no-op on a second run
        samples[split] = [(cache.get(sid, setting, lambda sid=sid: frames_of(sid)), label)
                          for sid, (_, label) in zip(ids, items)]
    lengths = [f.shape[0] for f, _ in samples["train"]]
    prepare_seconds = time.perf_counter() - start

    net = build_net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    train = torch.utils.data.DataLoader(samples["train"], batch_size=batch, shuffle=True,
                                        collate_fn=pad_sequence_collate)
    for _ in range(epochs):
        net.train()
        for x, y, n in train:
            loss = torch.nn.functional.cross_entropy(logits(net, x, n), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

    net.eval()
    correct = 0
    with torch.no_grad():
        for x, y, n in torch.utils.data.DataLoader(samples["test"], batch_size=128, collate_fn=pad_sequence_collate):
            correct += (logits(net, x, n).argmax(1) == y).sum().item()
    accuracy = correct / len(samples["test"])
    seconds = time.perf_counter() - start
    if kept:
        print(f"denoising kept {np.mean(kept):.1%} of the events")
    print(f"frames per recording: {min(lengths)}..{max(lengths)} (window {WINDOW_US} us, sensor {size})")
    print(f"test accuracy {accuracy:.4f} on {len(samples['test'])} recordings after {epochs} epochs "
          f"({prepare_seconds:.1f} s preparing data, {seconds:.1f} s in all)")
    return {"accuracy": accuracy, "seconds": seconds}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    run(epochs=args.epochs, seed=args.seed)
