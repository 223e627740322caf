//! `gpu-ae map`: the test set's codes as a 2-D scatter coloured by label, with a legend: a 2-D code as it
//! is, a wider one projected on its first two principal components (the axes say so, with the share of
//! the codes' variance they keep). The picture and its axes join the checkpoint's run report.

use anyhow::ensure;

use super::MapArgs;
use super::encode::Codes;
use super::eval::{check_png_name, open};
use super::report::add_to_report;
use super::train::checkpoint_file;
use crate::apps::linalg::symmetric_eigen;
use crate::report::png::save_rgb;
use crate::report::scatter::{Scatter, draw};

pub fn run(a: &MapArgs) -> anyhow::Result<()> {
    let path = checkpoint_file(&a.checkpoint.checkpoint, "--checkpoint")?;
    let out = match &a.out {
        Some(out) => out.clone(),
        None => path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("map.png"),
    };
    check_png_name(&out)?;
    let (ckpt, config, data) = open(&a.checkpoint)?;
    let codes = Codes::of(&a.checkpoint, &ckpt, &config, &data, 0, data.test.len())?;
    let width = codes.width;
    ensure!(
        width >= 2,
        "map draws codes in a plane, and the checkpoint's {} has a 1-D code",
        config.variant.name()
    );
    let code = if codes.variational { "μ" } else { "code" };
    let (points, x_label, y_label) = if width == 2 {
        let points = codes.test.chunks_exact(2).map(|c| (c[0], c[1])).collect();
        (points, format!("{code} unit 1"), format!("{code} unit 2"))
    } else {
        let (points, kept) = principal_plane(&codes.test, width);
        (
            points,
            format!(
                "PC1 of the {width}-d {code} ({:.0}% of its variance)",
                100.0 * kept[0]
            ),
            format!("PC2 ({:.0}%)", 100.0 * kept[1]),
        )
    };
    let title = format!(
        "{} epoch {}: {} test codes",
        config.variant.name(),
        ckpt.state.position.epoch,
        data.test.len()
    );
    let picture = draw(&Scatter {
        title: &title,
        x_label: &x_label,
        y_label: &y_label,
        points: &points,
        classes: &data.test.labels,
    });
    save_rgb(&out, &picture)?;
    let what = format!(
        "{} test codes coloured by label; {}",
        data.test.len(),
        if width == 2 {
            "the 2-D code as it is".to_string()
        } else {
            format!("{x_label} against {y_label}")
        }
    );
    println!("wrote {} ({what})", out.display());
    let figures = [
        ("test codes".to_string(), data.test.len().to_string()),
        ("code width".into(), width.to_string()),
        ("x axis".into(), x_label.clone()),
        ("y axis".into(), y_label.clone()),
    ];
    add_to_report(&path, "map", &figures, &[(out, what)])
}

/// Rows of `width` values projected on their first two principal components, and the share of the total
/// variance each keeps.
fn principal_plane(rows: &[f32], width: usize) -> (Vec<(f32, f32)>, [f64; 2]) {
    let n = (rows.len() / width).max(1);
    let mut mean = vec![0f64; width];
    for row in rows.chunks_exact(width) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64 / n as f64;
        }
    }
    let mut covariance = vec![0f64; width * width];
    for row in rows.chunks_exact(width) {
        let c: Vec<f64> = row.iter().zip(&mean).map(|(&v, m)| v as f64 - m).collect();
        for i in 0..width {
            for j in 0..width {
                covariance[i * width + j] += c[i] * c[j] / n as f64;
            }
        }
    }
    let (values, vectors) = symmetric_eigen(&covariance, width);
    let total: f64 = values
        .iter()
        .map(|v| v.max(0.0))
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    let points = rows
        .chunks_exact(width)
        .map(|row| {
            let along = |k: usize| {
                row.iter()
                    .zip(&mean)
                    .enumerate()
                    .map(|(i, (&v, m))| (v as f64 - m) * vectors[i * width + k])
                    .sum::<f64>() as f32
            };
            (along(0), along(1))
        })
        .collect();
    (
        points,
        [values[0].max(0.0) / total, values[1].max(0.0) / total],
    )
}
