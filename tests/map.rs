//! `gpu-ae map`: a 2-D code drawn as it is and a wider one on its principal plane, every class in its
//! colour with a legend, on every backend; a 1-D code refused.

mod common;

use common::run_cli as gpu_ae;

use common::train_into;

/// matplotlib's tab10, as the map draws the ten digits.
const TAB10: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

#[test]
fn map_draws_every_class_on_every_backend() {
    let mut backends = vec!["cpu"];
    backends.extend(common::gpu_backend());
    for (name, args, says) in [
        (
            "map-vae",
            &["--variant", "vae", "--latent", "2"][..],
            "the 2-D code as it is",
        ),
        (
            "map-ae",
            &["--variant", "ae", "--latent", "12"][..],
            "PC1 of the 12-d code",
        ),
    ] {
        let args = [args, &["--hidden", "32", "--limit", "400", "--epochs", "1"]].concat();
        let dir = train_into(name, "cpu", &args);
        for backend in &backends {
            let out = dir.join(format!("map-{backend}.png"));
            let (ok, said) = gpu_ae(&[
                "map",
                "--checkpoint",
                dir.to_str().unwrap(),
                "--backend",
                backend,
                "--out",
                out.to_str().unwrap(),
            ]);
            assert!(
                ok && said.contains("400 test codes coloured by label") && said.contains(says),
                "{said}"
            );
            let img = image::open(&out).unwrap().to_rgb8();
            for (digit, colour) in TAB10.iter().enumerate() {
                let pixels = img.pixels().filter(|p| p.0 == *colour).count();
                // The legend's 10×10 square and at least one 3×3 point.
                assert!(
                    pixels >= 109,
                    "{name} on {backend}: digit {digit} has {pixels} pixels"
                );
            }
        }
        std::fs::remove_dir_all(dir).ok();
    }
}

#[test]
fn map_refuses_a_one_dimensional_code() {
    let dir = train_into(
        "map-1d",
        "cpu",
        &[
            "--variant",
            "ae",
            "--latent",
            "1",
            "--limit",
            "64",
            "--epochs",
            "1",
        ],
    );
    let (ok, said) = gpu_ae(&[
        "map",
        "--checkpoint",
        dir.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(!ok && said.contains("1-D code"), "{said}");
    assert!(!dir.join("map.png").exists());
    std::fs::remove_dir_all(dir).ok();
}
