#!/usr/bin/env bash
# One visit to a machine with a real GPU: every GPU figure the issues ask for, in one batch, so a short
# lease is enough. Build here, take the binary along, run this there:
#
#   cargo build --release && mkdir -p .dev && strip -o .dev/gpu-ae target/release/gpu-ae
#   # on the GPU machine, from the repository root (MNIST comes from assets/ in the copied tree):
#   bash benches/device.sh .dev/gpu-ae "$OUT"
#
# Writes (at most 8 files): device.log (everything printed), bench.json, mixed.json (--precision f32,mixed),
# dense.csv and conv.csv (4-epoch
# accuracy runs), conv20.csv and memory.csv (20 epochs with GPU memory sampled every second, where
# nvidia-smi exists). Copy the figures into benches/README.md.
set -uo pipefail
bin=${1:?usage: benches/device.sh PATH/TO/gpu-ae OUT_DIR}
out=${2:?usage: benches/device.sh PATH/TO/gpu-ae OUT_DIR}
mkdir -p "$out"
log="$out/device.log"
work=$(mktemp -d)

step() {
    echo "== $*" | tee -a "$log"
    "$@" >>"$log" 2>&1
    echo "== exit $?" >>"$log"
}

step "$bin" info
step "$bin" train --variant conv-dae --profile --quiet
step "$bin" bench --json "$out/bench.json" --matmul-kernels auto,tile64,tile128,tile128v4,splitk4
# --precision mixed against f32 (benches/README.md, "Mixed precision"): time and memory.
step "$bin" bench --precision f32,mixed --models dense-ae,conv-dae --batches 128,1024 --steps 50 \
    --matmul-sizes none --json "$out/mixed.json"
step "$bin" train --variant ae --epochs 4 --quiet --out "$work/dense"
cp "$work/dense/metrics.csv" "$out/dense.csv"
step "$bin" train --variant conv-dae --epochs 4 --quiet --out "$work/conv"
cp "$work/conv/metrics.csv" "$out/conv.csv"

# 20 epochs: does GPU memory grow? (Every buffer is allocated before the first step.)
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader -l 1 >"$out/memory.csv" &
    sampler=$!
fi
step "$bin" train --variant conv-dae --epochs 20 --quiet --save-every 0 --out "$work/conv20"
cp "$work/conv20/metrics.csv" "$out/conv20.csv"
[ -n "${sampler:-}" ] && kill "$sampler"

# Resume on the GPU: 1 epoch, then resume to 3, against 3 uninterrupted epochs (within 1e-5 relative).
step "$bin" train --variant conv-dae --epochs 3 --limit 12800 --quiet --out "$work/whole"
step "$bin" train --variant conv-dae --epochs 1 --limit 12800 --quiet --out "$work/cut"
step "$bin" train --resume "$work/cut/checkpoint.safetensors" --epochs 3 --quiet --out "$work/cut"
{
    echo "== resume: uninterrupted, then resumed"
    cat "$work/whole/metrics.csv" "$work/cut/metrics.csv"
} >>"$log"
echo "done: $out"
