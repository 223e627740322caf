//! gpu-ae: autoencoders trained by hand-written WGSL compute shaders, with a CPU backend as the reference.
//!
//! The path of one batch: [`cli`] parses flags → [`model::variants`] builds a [`model::Model`] →
//! [`plan::compile`] turns it into buffers and op lists ([`ops::Op`]) → a backend
//! ([`backend::gpu::GpuExecutor`] or [`backend::cpu::CpuExecutor`]) runs them → [`train`] drives epochs and
//! reads the loss back → [`report`] writes metrics and pictures.

pub mod apps;
pub mod backend;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod model;
pub mod objective;
pub mod ops;
pub mod plan;
pub mod report;
pub mod rng;
pub mod run;
pub mod selftest;
pub mod train;
