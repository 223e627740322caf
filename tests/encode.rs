//! `gpu-ae encode`: every training and test image's code with its label, as safetensors, equal to a host
//! forward pass of the checkpoint's encoder, the same on the GPU as on the CPU; and the refusals.

mod common;

use common::run_cli as gpu_ae;

use common::train_into;
use gpu_ae::checkpoint;
use gpu_ae::data::mnist;
use safetensors::SafeTensors;

/// (shape, f32 values) of tensor `name`.
fn floats(file: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = file.tensor(name).unwrap();
    let values = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), values)
}

#[test]
fn encode_writes_every_code_and_label() {
    let dir = train_into(
        "encode",
        "cpu",
        &[
            "--variant",
            "ae",
            "--hidden",
            "32",
            "--latent",
            "6",
            "--limit",
            "300",
            "--epochs",
            "1",
        ],
    );
    let d = dir.to_str().unwrap();
    let mut backends = vec!["cpu"];
    backends.extend(common::gpu_backend());
    let mut all = Vec::new();
    for backend in backends {
        let out = dir.join(format!("codes-{backend}.safetensors"));
        let (ok, said) = gpu_ae(&[
            "encode",
            "--checkpoint",
            d,
            "--backend",
            backend,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{said}");
        assert!(
            said.contains("300 training and 300 test codes of 6 values"),
            "{said}"
        );
        all.push(std::fs::read(&out).unwrap());
    }
    let data = mnist::load_bundled().unwrap();
    let ckpt = checkpoint::load(&dir.join("checkpoint.safetensors")).unwrap();
    let tensor = |name: &str| {
        ckpt.tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| v.clone())
            .unwrap()
    };
    let (w0, b0, w1, b1) = (
        tensor("layers.0.weight"),
        tensor("layers.0.bias"),
        tensor("layers.1.weight"),
        tensor("layers.1.bias"),
    );
    // The code of a 784-32-6 ReLU encoder, on the host in f64.
    let code = |image: &[f32]| -> Vec<f64> {
        let dense = |w: &[f32], b: &[f32], x: &[f64]| -> Vec<f64> {
            b.iter()
                .enumerate()
                .map(|(o, &bias)| {
                    let s: f64 = x
                        .iter()
                        .enumerate()
                        .map(|(i, v)| w[o * x.len() + i] as f64 * v)
                        .sum();
                    (s + bias as f64).max(0.0)
                })
                .collect()
        };
        let x: Vec<f64> = image.iter().map(|&v| v as f64).collect();
        dense(&w1, &b1, &dense(&w0, &b0, &x))
    };
    let cpu = SafeTensors::deserialize(&all[0]).unwrap();
    for (split, source) in [("train", &data.train), ("test", &data.test)] {
        let (shape, codes) = floats(&cpu, &format!("{split}.codes"));
        assert_eq!(shape, [300, 6]);
        let labels = cpu.tensor(&format!("{split}.labels")).unwrap();
        assert_eq!(labels.dtype(), safetensors::Dtype::U8);
        assert_eq!(labels.data(), &source.labels[..300]);
        for index in [0, 129, 299] {
            let want = code(&source.image(index));
            for (j, (&got, want)) in codes[index * 6..index * 6 + 6]
                .iter()
                .zip(&want)
                .enumerate()
            {
                assert!(
                    (got as f64 - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{split} {index}, unit {j}: {got} vs {want}"
                );
            }
        }
        assert!(codes.iter().any(|&c| c > 0.0));
    }
    for other in &all[1..] {
        let gpu = SafeTensors::deserialize(other).unwrap();
        for name in ["train.codes", "test.codes"] {
            let (c, g) = (floats(&cpu, name).1, floats(&gpu, name).1);
            common::assert_close(name, &g, &c, 1e-4);
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn encode_refuses_what_it_cannot_write() {
    let dir = train_into(
        "encode-pool",
        "cpu",
        &[
            "--variant",
            "conv-ae",
            "--deck",
            "pool",
            "--channels",
            "4",
            "--limit",
            "64",
            "--epochs",
            "1",
        ],
    );
    let d = dir.to_str().unwrap();
    let out = dir.join("codes.safetensors");
    let (ok, said) = gpu_ae(&[
        "encode",
        "--checkpoint",
        d,
        "--backend",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        !ok && said.contains("encode needs") && said.contains("pool deck"),
        "{said}"
    );
    let (ok, said) = gpu_ae(&["encode", "--checkpoint", d, "--out", "codes.npy"]);
    assert!(!ok && said.contains("*.safetensors"), "{said}");
    assert!(!out.exists() && !std::path::Path::new("codes.npy").exists());
    std::fs::remove_dir_all(dir).ok();
}
