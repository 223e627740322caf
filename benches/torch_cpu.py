"""PyTorch on the CPU, timed as `gpu-ae bench --skip-gpu --steps N` times the CPU backend, for a side-by-side
table from one sitting (benches/README.md says how to install PyTorch's CPU build and run both).

The models are gpu-ae's bench models, layer for layer (fp32, Adam lr 1e-3, PyTorch's default initialisation):
  dense-ae     784-256-64-256-784, ReLU hidden, logits out, BCE with logits        (train --variant ae)
  conv-dae     Conv(1,32,3,s2,p1)-ReLU-Conv(32,64,3,s2,p1)-ReLU-ConvT(64,32,3,s2,p1,op1)-ReLU-
               ConvT(32,1,3,s2,p1,op1); input + N(0, 0.5²) clipped to [0, 1], BCE against the clean image
                                                                                  (train --variant conv-dae)
  conv-ae-pool Conv(1,32,3,s1,p1)-ReLU-BN-MaxPool2-Conv(32,64)-ReLU-BN-MaxPool2-MaxUnpool2-Conv(64,32)-ReLU-
               MaxUnpool2-Conv(32,1); BCE                                  (train --variant conv-ae --deck pool)
  deep-ae      784-1000-500-250-30 mirrored, sigmoid hidden, linear code, MSE
               (train --variant ae --hidden 1000,500,250 --latent 30 --activation sigmoid --loss mse)

Timing, as bench does it: a fresh model per (model, batch); the epoch's shuffled order; 3 warm-up steps, then N
timed steps (each: gather the batch, corrupt it, forward, loss, backward, Adam step), extrapolated to an epoch
of ceil(60000 / batch) steps. Threads: --threads (default 2, torch.set_num_threads).

Usage: python3 benches/torch_cpu.py [--models dense-ae,conv-dae,conv-ae-pool,deep-ae] [--batches 128,1024]
                                    [--steps 60] [--threads 2] [--data assets/mnist] [--json FILE]
"""
import argparse
import gzip
import json
import math
import os
import platform
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load_images(data_dir, name):
    path = os.path.join(data_dir, name)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)


class PoolAe(nn.Module):
    """conv-ae --deck pool: the unpooling uses the indices of the matching pooling."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 32, 3, 1, 1), nn.BatchNorm2d(32)
        self.c2, self.b2 = nn.Conv2d(32, 64, 3, 1, 1), nn.BatchNorm2d(64)
        self.d2, self.d1 = nn.Conv2d(64, 32, 3, 1, 1), nn.Conv2d(32, 1, 3, 1, 1)

    def forward(self, x):
        h, i1 = F.max_pool2d(self.b1(F.relu(self.c1(x))), 2, return_indices=True)
        h, i2 = F.max_pool2d(self.b2(F.relu(self.c2(h))), 2, return_indices=True)
        h = F.relu(self.d2(F.max_unpool2d(h, i2, 2)))
        return self.d1(F.max_unpool2d(h, i1, 2))


def build(name):
    """(model, loss, noise σ)."""
    if name == "dense-ae":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(),
                             nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 784),
                             nn.Unflatten(1, (1, 28, 28))), "bce", 0.0
    if name == "conv-dae":
        return nn.Sequential(nn.Conv2d(1, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
                             nn.ConvTranspose2d(64, 32, 3, 2, 1, 1), nn.ReLU(),
                             nn.ConvTranspose2d(32, 1, 3, 2, 1, 1)), "bce", 0.5
    if name == "conv-ae-pool":
        return PoolAe(), "bce", 0.0
    if name == "deep-ae":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 1000), nn.Sigmoid(), nn.Linear(1000, 500), nn.Sigmoid(),
                             nn.Linear(500, 250), nn.Sigmoid(), nn.Linear(250, 30),
                             nn.Linear(30, 250), nn.Sigmoid(), nn.Linear(250, 500), nn.Sigmoid(),
                             nn.Linear(500, 1000), nn.Sigmoid(), nn.Linear(1000, 784),
                             nn.Unflatten(1, (1, 28, 28))), "mse", 0.0
    raise SystemExit(f"unknown model {name}")


def time_epoch(name, batch, steps, warmup, train):
    torch.manual_seed(0)
    model, loss, noise = build(name)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = train.shape[0]
    perm = torch.randperm(n)
    per_epoch = math.ceil(n / batch)
    steps = min(steps, per_epoch - warmup)

    def step(i):
        x = train[perm[i * batch:(i + 1) * batch]]
        xin = (x + noise * torch.randn_like(x)).clamp(0, 1) if noise else x
        opt.zero_grad(set_to_none=True)
        out = model(xin)
        l = F.binary_cross_entropy_with_logits(out, x) if loss == "bce" else F.mse_loss(out, x)
        l.backward()
        opt.step()
        return l

    for i in range(warmup):
        step(i)
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        last = step(i)
    seconds = time.perf_counter() - start
    return {"model": name, "batch": batch, "timed_steps": steps, "steps_per_epoch": per_epoch,
            "seconds_per_epoch": seconds / steps * per_epoch, "last_loss": last.item()}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="dense-ae,conv-dae,conv-ae-pool,deep-ae")
    p.add_argument("--batches", default="128,1024")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "assets", "mnist"))
    p.add_argument("--json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    train = torch.from_numpy(load_images(a.data, "train-images-idx3-ubyte.gz").copy()).float().div(255)
    rows = []
    for name in a.models.split(","):
        for batch in [int(b) for b in a.batches.split(",")]:
            r = time_epoch(name, batch, a.steps, a.warmup, train)
            rows.append(r)
            print(f"{name:13} batch {batch:5}  {r['seconds_per_epoch']:8.2f} s/epoch* "
                  f"({r['timed_steps']} steps timed)", flush=True)
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
            "machine": platform.machine(), "mkldnn": torch.backends.mkldnn.is_available(),
            "epochs": rows}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(info, f, indent=2)
        print("wrote", a.json)


if __name__ == "__main__":
    main()
