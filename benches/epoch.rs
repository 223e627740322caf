//! `cargo bench`: the `gpu-ae bench` code path with small defaults (a few timed steps of each model at
//! batch 128, extrapolated to an epoch; two matmul sizes), printing the same GPU/CPU table.
//!
//! Extra flags go after `--` and override the defaults, e.g.
//! `cargo bench --bench epoch -- --steps 50 --batches 128,1024 --json bench.json`.

use clap::Parser;
use gpu_ae::cli::Cli;

const DEFAULTS: &[&str] = &[
    "gpu-ae",
    "bench",
    "--steps",
    "5",
    "--warmup",
    "2",
    "--batches",
    "128",
    "--matmul-sizes",
    "128x784x256,1024x784x256",
    "--matmul-seconds",
    "0.5",
];

fn main() {
    // cargo passes `--bench` to harness = false targets; it is not one of ours.
    let extra = std::env::args().skip(1).filter(|a| a != "--bench");
    let argv: Vec<String> = DEFAULTS
        .iter()
        .map(|s| s.to_string())
        .chain(extra)
        .collect();
    let cli = Cli::parse_from(argv);
    if let Err(e) = gpu_ae::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
