"""PyTorch's automatic mixed precision on gpu-ae's dense `ae`, against fp32: the spread a seed gives the
4-epoch test loss, which `tests/mixed.rs` takes into account (benches/README.md, "Mixed precision").

Model: 784-256-64-256-784, ReLU hidden, logits out, BCE with logits, Adam lr 1e-3, batch 128, 4 epochs of
MNIST, PyTorch's default initialisation. Mixed: `torch.autocast(dtype=torch.float16)` around the forward
pass (Linear in f16, the loss in fp32 on the f16 logits) and `torch.amp.GradScaler` (initial scale 2^16,
halved on overflow, doubled after 2000 clean steps), as `gpu-ae train --precision mixed` does it. Runs on
the CPU (autocast's f16 path there) or, with --device cuda, on a GPU.

Usage: python3 benches/torch_amp.py [--seeds 0,1,2,3,4,5,6,7] [--device cpu] [--data assets/mnist]
Prints per seed: the test BCE per pixel in fp32 and in mixed precision, and their difference.
"""
import argparse
import gzip
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load(data_dir, prefix):
    name = next(n for n in sorted(os.listdir(data_dir)) if n.startswith(prefix))
    path = os.path.join(data_dir, name)
    raw = (gzip.open if path.endswith(".gz") else open)(path, "rb").read()
    pixels = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255
    return torch.from_numpy(pixels)


def test_loss(seed, mixed, train, test, device):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(),
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 784),
    ).to(device)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    scaler = torch.amp.GradScaler(device, enabled=mixed)
    for _ in range(4):
        order = torch.randperm(len(train))
        for i in range(0, len(train), 128):
            x = train[order[i:i + 128]]
            with torch.autocast(device, dtype=torch.float16, enabled=mixed):
                logits = model(x)
            loss = F.binary_cross_entropy_with_logits(logits.float(), x)
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    with torch.no_grad(), torch.autocast(device, dtype=torch.float16, enabled=mixed):
        logits = model(test)
    return F.binary_cross_entropy_with_logits(logits.float(), test).item()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", default="0,1,2,3,4,5,6,7")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "assets", "mnist"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    train = load(a.data, "train-images").to(a.device)
    test = load(a.data, "t10k-images").to(a.device)
    print(f"torch {torch.__version__}, {a.device}")
    diffs = []
    for seed in [int(s) for s in a.seeds.split(",")]:
        start = time.time()
        full, mixed = (test_loss(seed, m, train, test, a.device) for m in (False, True))
        diffs.append(100 * (mixed - full) / full)
        print(f"seed {seed}: fp32 {full:.5f}  mixed {mixed:.5f}  {diffs[-1]:+.2f} %  ({time.time() - start:.0f} s)",
              flush=True)
    print(f"mean {np.mean(diffs):+.2f} %, range {min(diffs):+.2f} % to {max(diffs):+.2f} %")


if __name__ == "__main__":
    main()
