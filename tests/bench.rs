//! `gpu-ae bench` as a user runs it, and the per-op profiler: the shape of what they report, never timings.

mod common;

use std::path::PathBuf;
use std::process::Command;

use gpu_ae::backend::Program;
use gpu_ae::backend::gpu::GpuExecutor;
use gpu_ae::backend::gpu::profile::{Timing, TimingChoice, profile_step};
use gpu_ae::backend::load_initial_state;
use gpu_ae::model::Shape;
use gpu_ae::model::variants::{ConvConfig, Deck, DenseConfig, conv_ae, dense_ae};
use gpu_ae::objective::Objective;
use gpu_ae::ops::{Act, AdamHyper, LossKind, Noise};
use gpu_ae::plan::{Optimizer, Plan, PlanConfig, compile};
use serde_json::Value;

fn json_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("gpu-ae-bench-{name}-{}.json", std::process::id()))
}

/// Runs `gpu-ae bench` with `extra` flags and returns the parsed --json report.
fn bench_json(name: &str, extra: &[&str]) -> Value {
    let path = json_path(name);
    let mut args = vec![
        "bench",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--models",
        "dense-ae",
        "--batches",
        "128",
        "--json",
        path.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_gpu-ae"))
        .args(&args)
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "gpu-ae bench failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).expect("--json wrote the report");
    let _ = std::fs::remove_file(&path);
    serde_json::from_str(&text).expect("the report is valid JSON")
}

fn positive(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(
        x.is_finite() && x > 0.0,
        "{what} = {x} is not positive and finite"
    );
    x
}

fn check_epoch(e: &Value, backend: &str) {
    assert_eq!(e["model"], "dense-ae");
    assert_eq!(e["batch"], 128);
    assert_eq!(e["backend"], backend);
    assert_eq!(e["steps_timed"], 2);
    assert_eq!(e["extrapolated"], true, "2 steps of 469 are extrapolated");
    assert!(e["device"].as_str().is_some_and(|d| !d.is_empty()));
    positive(&e["seconds_timed"], "seconds_timed");
    let epoch = positive(&e["seconds_per_epoch"], "seconds_per_epoch");
    let recording = positive(
        &e["recording_seconds_per_epoch"],
        "recording_seconds_per_epoch",
    );
    assert!(
        recording <= epoch,
        "recording {recording} s is part of the epoch's {epoch} s"
    );
    positive(&e["train_loss"], "train_loss");
    assert_eq!(
        positive(&e["steps_per_epoch"], "steps_per_epoch"),
        60_000usize.div_ceil(128) as f64
    );
}

fn check_common(report: &Value) {
    assert_eq!(report["schema"], "gpu-ae-bench/1");
    assert!(
        report["build"]["wgpu_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("30."))
    );
    for key in ["method", "epochs", "ratios", "matmul"] {
        assert!(!report[key].is_null(), "the report has no {key:?}");
    }
    assert!(report["method"]["epoch"].as_str().is_some());
    assert_eq!(report["method"]["steps"], 2);
}

#[test]
fn bench_json_reports_cpu_epoch_figures() {
    let report = bench_json("cpu", &["--skip-gpu"]);
    check_common(&report);
    assert!(report["gpu"].is_null());
    assert!(report["cpu"].as_str().is_some());
    let epochs = report["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 1);
    check_epoch(&epochs[0], "cpu");
    assert_eq!(report["ratios"].as_array().unwrap().len(), 0);
    assert_eq!(report["matmul"].as_array().unwrap().len(), 0);
}

#[test]
fn bench_json_reports_gpu_cpu_ratio_and_matmul() {
    let Some(backend) = common::gpu_backend() else {
        return;
    };
    let report = bench_json(
        "gpu",
        &[
            "--backend",
            backend,
            "--matmul-sizes",
            "64x96x32",
            "--matmul-seconds",
            "0.05",
        ],
    );
    check_common(&report);
    assert!(report["gpu"]["description"].as_str().is_some());
    assert!(report["gpu"]["timestamp_queries"].is_boolean());
    let epochs = report["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 2);
    check_epoch(&epochs[0], "gpu");
    check_epoch(&epochs[1], "cpu");
    let ratio = &report["ratios"][0];
    let gpu = positive(&ratio["gpu_seconds_per_epoch"], "gpu s/epoch");
    let cpu = positive(&ratio["cpu_seconds_per_epoch"], "cpu s/epoch");
    let r = positive(&ratio["cpu_over_gpu"], "cpu_over_gpu");
    assert!((r - cpu / gpu).abs() <= 1e-9 * r);
    let mm = &report["matmul"][0];
    assert_eq!(
        (&mm["m"], &mm["k"], &mm["n"]),
        (&64.into(), &96.into(), &32.into())
    );
    positive(&mm["gflops"], "matmul GFLOP/s");
    positive(&mm["runs"], "matmul runs");
}

/// A tiny training plan over random bytes: every op kind of the model family runs.
fn tiny_plan(conv: bool) -> Plan {
    let (rows, cols) = (8, 8);
    let input = Shape {
        c: 1,
        h: rows,
        w: cols,
    };
    let model = if conv {
        let cfg = ConvConfig {
            channels: vec![3, 4],
            deck: Deck::Pool,
            act: Act::Relu,
            output_act: Act::Sigmoid,
        };
        conv_ae("conv-dae", input, &cfg).unwrap()
    } else {
        let cfg = DenseConfig {
            hidden: vec![12],
            latent: 5,
            act: Act::Sigmoid,
            code_act: Act::Sigmoid,
            output_act: Act::Sigmoid,
        };
        dense_ae(input, &cfg).unwrap()
    };
    let cfg = PlanConfig {
        batch: 6,
        objective: Objective::reconstruction(LossKind::BceWithLogits),
        optimizer: Optimizer::Adam(AdamHyper::default()),
        train_samples: 20,
        test_samples: 7,
        noise: conv.then_some(Noise::Gaussian { sigma: 0.3 }),
        seed: 3,
        lr_schedule: None,
        precision: gpu_ae::plan::Precision::F32,
    };
    compile(&model, &cfg).unwrap()
}

fn check_profile_covers_step(conv: bool, choice: TimingChoice) {
    let Some(ctx) = common::gpu() else { return };
    let plan = tiny_plan(conv);
    let step_ops = plan.program_ops(Program::TRAIN_STEP).count();
    let names: Vec<&str> = plan
        .program_ops(Program::TRAIN_STEP)
        .map(|op| op.name())
        .collect();
    let pixels = plan.features;
    let (train, test) = (plan.train_samples, plan.test_samples);
    let mut ex = GpuExecutor::new(&ctx, plan).unwrap();
    load_initial_state(
        &mut ex,
        &common::random_bytes(train * pixels, 1),
        &common::random_bytes(test * pixels, 2),
        4,
    );
    let profile = profile_step(&mut ex, choice, 2);
    assert_eq!(profile.rows.len(), step_ops, "one row per op of the step");
    let got: Vec<&str> = profile.rows.iter().map(|r| r.name).collect();
    assert_eq!(got, names, "rows in step order, named by Op::name");
    for r in &profile.rows {
        assert!(!r.kernel.is_empty(), "{}: no kernel named", r.name);
        assert!(
            r.micros.is_finite() && r.micros >= 0.0,
            "{}: {} µs",
            r.name,
            r.micros
        );
    }
    assert!(profile.rows.iter().any(|r| r.flops > 0 && r.bytes > 0));
    assert!(profile.step_wall_micros > 0.0 && profile.step_batched_micros > 0.0);
    let has_timestamps = ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY);
    match profile.timing {
        Timing::GpuTimestamps { .. } => assert!(choice == TimingChoice::Auto && has_timestamps),
        Timing::HostTimed { .. } => assert!(choice == TimingChoice::Host || !has_timestamps),
    }
    let table = profile.render(5);
    assert!(table.contains(&format!("sum of {step_ops} ops")), "{table}");
}

#[test]
fn profiler_rows_cover_every_op_of_a_dense_training_step() {
    check_profile_covers_step(false, TimingChoice::Auto);
}

#[test]
fn profiler_rows_cover_every_op_of_a_conv_training_step() {
    check_profile_covers_step(true, TimingChoice::Auto);
}

#[test]
fn host_timed_profiler_rows_cover_every_op_of_a_training_step() {
    check_profile_covers_step(true, TimingChoice::Host);
}
