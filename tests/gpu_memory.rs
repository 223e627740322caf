//! Every device buffer is allocated before training starts: many epochs later the device holds exactly as
//! much memory as after the first.

mod common;

use std::sync::atomic::AtomicBool;

use gpu_ae::backend::gpu::GpuExecutor;
use gpu_ae::checkpoint::{self, TrainingState};
use gpu_ae::model::Shape;
use gpu_ae::model::variants::{ConvConfig, Deck, conv_ae};
use gpu_ae::objective::Objective;
use gpu_ae::ops::{Act, AdamHyper, LossKind, Noise};
use gpu_ae::plan::{Optimizer, PlanConfig, compile};
use gpu_ae::train::{EpochOutcome, Trainer};

#[test]
fn twenty_epochs_allocate_nothing_after_the_first() {
    let Some(ctx) = common::gpu() else { return };
    let Some(at_start) = ctx.allocated_bytes() else {
        eprintln!("skipping: {} reports no allocator figures", ctx.describe());
        return;
    };
    let (side, samples) = (12, 40);
    let image = Shape {
        c: 1,
        h: side,
        w: side,
    };
    let cfg = ConvConfig {
        channels: vec![3, 5],
        deck: Deck::Pool,
        act: Act::Relu,
        output_act: Act::Sigmoid,
    };
    let model = conv_ae("conv-dae", image, &cfg).expect("model");
    let plan = compile(
        &model,
        &PlanConfig {
            batch: 16,
            objective: Objective::reconstruction(LossKind::BceWithLogits),
            optimizer: Optimizer::Adam(AdamHyper::default()),
            train_samples: samples,
            test_samples: samples,
            noise: Some(Noise::Mask { fraction: 0.25 }),
            seed: 3,
            lr_schedule: None,
            precision: gpu_ae::plan::Precision::F32,
        },
    )
    .expect("plan");
    let pixels = common::random_bytes(samples * side * side, 11);
    let mut ex = GpuExecutor::new(&ctx, plan).expect("executor");
    let mut trainer = Trainer::new(&mut ex, &pixels, &pixels, 3);
    trainer.steps_per_submit = 2;
    let never = AtomicBool::new(false);
    let mut after_epoch = Vec::new();
    for _ in 0..20 {
        let outcome = trainer
            .train_epoch(&mut |_| {}, &never)
            .expect("finite losses");
        assert!(matches!(outcome, EpochOutcome::Completed(_)));
        assert!(trainer.evaluate().total.is_finite());
        // What a save reads back, every epoch, as `train` does.
        let state = TrainingState {
            position: trainer.position.clone(),
            seed: 3,
        };
        let _ = checkpoint::capture(trainer.executor(), serde_json::json!({}), state);
        after_epoch.push(ctx.allocated_bytes().expect("figures"));
    }
    assert!(
        after_epoch[0] > at_start,
        "the plan's buffers show in the figures"
    );
    assert!(
        after_epoch.iter().all(|&b| b == after_epoch[0]),
        "device memory after each epoch: {after_epoch:?}"
    );
}
