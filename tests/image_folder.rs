//! `--data DIR` with a folder of one's own PNG images, a sub-folder per class (torchvision's ImageFolder):
//! loading, labels and order, training on it through the CLI, and every way a folder can be wrong, each
//! an exit status 1 with a message naming the file or folder, and nothing written.

mod common;

use std::path::{Path, PathBuf};

use gpu_ae::data::mnist::load_dir;
use image::{GrayImage, Luma, Rgb, RgbImage};

/// A fresh, empty folder in the temp directory.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-ae-imgfolder-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `side`×`side` grey PNG at `path` whose pixels encode (class, index), so images can be told apart.
fn grey_png(path: &Path, side: u32, class: u8, index: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    GrayImage::from_fn(side, side, |x, y| {
        Luma([(class * 60 + index * 3 + (x + y) as u8) % 250])
    })
    .save(path)
    .unwrap();
}

/// `per_class` images of each class in `folder/<class>/`.
fn class_folders(folder: &Path, classes: &[&str], per_class: u8, side: u32) {
    for (c, class) in classes.iter().enumerate() {
        for i in 0..per_class {
            grey_png(
                &folder.join(class).join(format!("img{i:03}.png")),
                side,
                c as u8,
                i,
            );
        }
    }
}

/// `gpu-ae ARGS`: (exit code, everything it said).
fn gpu_ae(args: &[&str]) -> (Option<i32>, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-ae"))
        .args(args)
        .output()
        .expect("the binary runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code(), said)
}

#[test]
fn a_split_folder_loads_with_labels_from_the_sorted_class_names() {
    let dir = scratch("split");
    // Created out of order: labels follow the sorted names, not the creation order.
    class_folders(&dir.join("train"), &["zebra", "ant", "moth"], 5, 8);
    class_folders(&dir.join("test"), &["moth", "ant"], 2, 8);
    let data = load_dir(&dir, false).expect("the folder loads");
    assert_eq!((data.train.len(), data.test.len()), (15, 4));
    assert_eq!((data.train.images.rows, data.train.images.cols), (8, 8));
    let count = |labels: &[u8], l: u8| labels.iter().filter(|&&x| x == l).count();
    // ant = 0, moth = 1, zebra = 2.
    assert_eq!([0, 1, 2].map(|l| count(&data.train.labels, l)), [5, 5, 5]);
    assert_eq!([0, 1, 2].map(|l| count(&data.test.labels, l)), [2, 2, 0]);
    // Every image keeps its own label: the first pixel of image i of the class created c-th is
    // 60 c + 3 i, and its label is the class's place among the sorted names.
    let created = ["zebra", "ant", "moth"];
    let sorted = ["ant", "moth", "zebra"];
    for (i, &label) in data.train.labels.iter().enumerate() {
        let first = data.train.images.pixels[i * 64];
        assert_eq!(created[first as usize / 60], sorted[label as usize]);
    }
    // The fixed order mixes the classes (the first images are not all of one class) and is the same
    // every time.
    assert!(
        data.train.labels[..5]
            .iter()
            .any(|&l| l != data.train.labels[0])
    );
    assert_eq!(load_dir(&dir, false).unwrap(), data);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_folder_without_a_split_gives_every_seventh_image_to_the_test_set() {
    let dir = scratch("nosplit");
    class_folders(&dir, &["a", "b", "c"], 7, 6);
    // Hidden files and a README beside the classes are not images of the data set.
    std::fs::write(dir.join("a").join(".DS_Store"), b"junk").unwrap();
    std::fs::write(dir.join("README.txt"), b"my digits").unwrap();
    let data = load_dir(&dir, false).expect("the folder loads");
    assert_eq!((data.train.len(), data.test.len()), (18, 3));
    assert_eq!((data.test.images.rows, data.test.images.cols), (6, 6));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn colour_images_become_grey() {
    let dir = scratch("colour");
    for (class, level) in [("dark", 40u8), ("light", 200u8)] {
        for i in 0..4 {
            let path = dir.join(class).join(format!("{i}.png"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            RgbImage::from_pixel(5, 5, Rgb([level, level, level]))
                .save(&path)
                .unwrap();
        }
    }
    let data = load_dir(&dir, false).unwrap();
    for split in [&data.train, &data.test] {
        for (i, &label) in split.labels.iter().enumerate() {
            let want = [40, 200][label as usize];
            assert!(
                split.images.pixels[i * 25..(i + 1) * 25]
                    .iter()
                    .all(|&p| p == want)
            );
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn train_runs_one_epoch_on_a_folder_of_pngs() {
    let dir = scratch("train");
    class_folders(&dir.join("train"), &["0", "1", "2"], 12, 8);
    class_folders(&dir.join("test"), &["0", "1", "2"], 4, 8);
    let out = dir.join("run");
    let (code, said) = gpu_ae(&[
        "train",
        "--data",
        dir.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--backend",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("(36 training, 12 test images of 8×8)"),
        "{said}"
    );
    let rows = common::metrics_rows(&out);
    assert_eq!(rows.len(), 1);
    assert!(rows[0]["test_loss"].is_finite());
    assert!(out.join("reconstructions.png").is_file());
    // A checkpoint reader reloads the same folder from the configuration.
    let (code, said) = gpu_ae(&[
        "eval",
        "--checkpoint",
        out.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert_eq!(code, Some(0), "{said}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `train --data DIR` fails with exit status 1, says every one of `expected`, and writes nothing.
fn refused(dir: &Path, expected: &[&str]) {
    let out = dir.with_extension("out");
    let _ = std::fs::remove_dir_all(&out);
    let (code, said) = gpu_ae(&[
        "train",
        "--data",
        dir.to_str().unwrap(),
        "--epochs",
        "1",
        "--backend",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{said}");
    for e in expected {
        assert!(said.contains(e), "expected {e:?} in: {said}");
    }
    assert!(!said.contains("panicked"), "{said}");
    assert!(!out.exists(), "a refused data set wrote {}", out.display());
}

#[test]
fn images_of_mixed_sizes_are_refused_naming_both_files_and_sizes() {
    let dir = scratch("mixed");
    class_folders(&dir, &["a", "b"], 4, 8);
    let odd = dir.join("b").join("odd.png");
    GrayImage::new(9, 7).save(&odd).unwrap();
    refused(
        &dir,
        &["odd.png", "9×7", "8×8", "all images must be one size"],
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_file_that_is_not_a_png_is_refused_by_name() {
    let dir = scratch("notpng");
    class_folders(&dir, &["a", "b"], 4, 8);
    std::fs::write(dir.join("a").join("notes.txt"), b"not a picture").unwrap();
    refused(&dir, &["notes.txt", "not a PNG image"]);
    std::fs::remove_dir_all(&dir).unwrap();

    let dir = scratch("badpng");
    class_folders(&dir, &["a", "b"], 4, 8);
    std::fs::write(
        dir.join("b").join("broken.png"),
        b"\x89PNG\r\n\x1a\ntruncated",
    )
    .unwrap();
    refused(&dir, &["broken.png", "not a PNG image"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn class_folders_without_images_are_refused() {
    let dir = scratch("empty");
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::create_dir_all(dir.join("b")).unwrap();
    refused(&dir, &[dir.to_str().unwrap(), "no PNG images"]);
    std::fs::remove_dir_all(&dir).unwrap();

    let dir = scratch("emptytest");
    class_folders(&dir.join("train"), &["a"], 3, 8);
    std::fs::create_dir_all(dir.join("test").join("a")).unwrap();
    refused(&dir, &["test", "no PNG images"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn more_classes_than_labels_are_refused() {
    let dir = scratch("classes");
    let names: Vec<String> = (0..11).map(|c| format!("class{c:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    class_folders(&dir, &names, 1, 8);
    refused(
        &dir,
        &["11 classes", "labels go 0..=9", "at most 10 classes"],
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn half_a_split_a_foreign_test_class_and_a_stray_image_are_refused() {
    let dir = scratch("half");
    class_folders(&dir.join("train"), &["a", "b"], 3, 8);
    refused(&dir, &["has a train folder but no test folder"]);
    class_folders(&dir.join("test"), &["a", "c"], 2, 8);
    refused(&dir, &["\"c\"", "test classes must be training classes"]);
    std::fs::remove_dir_all(dir.join("test").join("c")).unwrap();
    grey_png(&dir.join("test").join("loose.png"), 8, 0, 0);
    refused(&dir, &["loose.png", "put each image in its class's folder"]);
    std::fs::remove_dir_all(dir).unwrap();
}
