//! The run's report, checked as a person would: a real browser (headless Chromium) opens report.html from
//! the file system, offline, and every picture on it must have loaded. A screenshot is left beside it
//! (`report-screenshot.png` in the run directory, whose path the test prints) for a person to look at.
//!
//! Under `CI=true` a missing Chromium fails the test (`.ci/run` installs the `chromium` package);
//! elsewhere the browser checks are skipped with a message.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{run_cli, train_into};

/// A headless Chromium: the first of the usual names on PATH (or /usr/bin/chromium).
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = ["chromium", "chromium-browser", "google-chrome", "chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .chain([PathBuf::from("/usr/bin/chromium")])
        .find(|p| p.is_file());
    match found {
        Some(p) => Some(p),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but no chromium on PATH; .ci/run installs the chromium package")
        }
        None => {
            eprintln!("skipping the browser check: no chromium on PATH");
            None
        }
    }
}

/// Runs the browser headless on `page` with `args`, killed after a minute; returns its stdout.
fn browse(browser: &Path, profile: &Path, args: &[String], page: &Path) -> String {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("waiting on chromium").is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("chromium did not finish with {page:?} in a minute");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("chromium's output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Appended to a copy of report.html (beside it, so its relative links resolve the same): once the page
/// has loaded, every image records the width it decoded to. The product's page carries no script.
const PROBE: &str = "<script>addEventListener('load', function () {\
  for (const img of document.images) img.setAttribute('data-natural-width', img.naturalWidth);\
  document.body.setAttribute('data-probed', String(document.images.length));\
});</script>";

/// (src, natural width) of every image in the dumped DOM.
fn images_in(dom: &str) -> Vec<(String, Option<u32>)> {
    dom.split("<img")
        .skip(1)
        .map(|tag| {
            let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
            let attr = |name: &str| {
                let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
                Some(tag[at..at + tag[at..].find('"')?].to_string())
            };
            (
                attr("src").unwrap_or_default(),
                attr("data-natural-width").and_then(|w| w.parse().ok()),
            )
        })
        .collect()
}

#[test]
fn every_picture_of_the_report_loads_in_a_browser() {
    let dir = train_into(
        "report",
        "cpu",
        &["--epochs", "2", "--limit", "300", "--noise", "mask:0.25"],
    );
    let ckpt = dir.to_str().unwrap();
    let (ok, said) = run_cli(&["map", "--checkpoint", ckpt, "--backend", "cpu"]);
    assert!(ok, "{said}");
    assert!(said.contains("report.html"), "map names the report: {said}");
    // retrieve's picture goes elsewhere: the report links it by a relative path.
    let elsewhere = dir.with_file_name(format!(
        "{}-pictures",
        dir.file_name().unwrap().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&elsewhere);
    std::fs::create_dir_all(&elsewhere).unwrap();
    let retrieval = elsewhere.join("retrieval.png");
    let (ok, said) = run_cli(&[
        "retrieve",
        "--checkpoint",
        ckpt,
        "--backend",
        "cpu",
        "--queries",
        "20",
        "--out",
        retrieval.to_str().unwrap(),
    ]);
    assert!(ok, "{said}");

    let html = std::fs::read_to_string(dir.join("report.html")).expect("train wrote report.html");
    for section in ["gpu-ae train", "gpu-ae map", "gpu-ae retrieve"] {
        assert!(html.contains(section), "no {section} section");
    }
    for offline in ["<script", "<link", "http://", "https://"] {
        assert!(
            !html.contains(offline),
            "the page must open offline and run nothing: {offline}"
        );
    }
    let expected = [
        "loss.png",
        "reconstructions.png",
        "denoising.png",
        "map.png",
        "../",
    ];
    for src in expected {
        assert!(
            html.contains(&format!("<img src=\"{src}")),
            "no <img> of {src}"
        );
    }

    let Some(browser) = chromium() else { return };
    let profile = dir.join(".chromium-profile");
    let probe = dir.join("report-probe.html");
    std::fs::write(&probe, html.replace("</body>", &format!("{PROBE}</body>"))).unwrap();
    let dom = browse(
        &browser,
        &profile,
        &["--dump-dom".into(), "--virtual-time-budget=5000".into()],
        &probe,
    );
    assert!(
        dom.contains("data-probed=\"5\""),
        "the page did not finish loading, or has another count of images than the 5 expected:\n{dom}"
    );
    let images = images_in(&dom);
    assert_eq!(images.len(), 5, "{images:?}");
    for (src, width) in &images {
        assert!(
            width.is_some_and(|w| w > 0),
            "{src} did not load in the browser (natural width {width:?})"
        );
    }

    let screenshot = dir.join("report-screenshot.png");
    let _ = std::fs::remove_file(&screenshot);
    browse(
        &browser,
        &profile,
        &[
            format!("--screenshot={}", screenshot.display()),
            "--window-size=1280,5200".into(),
        ],
        &dir.join("report.html"),
    );
    let shot = image::open(&screenshot).expect("chromium wrote a screenshot");
    assert_eq!(shot.width(), 1280);
    eprintln!("look at the report as rendered: {}", screenshot.display());
    let _ = std::fs::remove_dir_all(&profile);
    let _ = std::fs::remove_dir_all(&elsewhere);
}

#[test]
fn loss_png_shows_a_one_epoch_run_and_resuming_redraws_the_whole_history() {
    let dir = train_into("report-resume", "cpu", &["--epochs", "1", "--limit", "200"]);
    let first = image::open(dir.join("loss.png"))
        .expect("loss.png")
        .to_rgb8();
    // Both markers of the single epoch are there: train blue, test orange.
    let has = |img: &image::RgbImage, c: [u8; 3]| img.pixels().any(|p| p.0 == c);
    assert!(has(&first, [31, 119, 180]) && has(&first, [255, 127, 14]));

    let (ok, said) = run_cli(&[
        "train",
        "--resume",
        dir.to_str().unwrap(),
        "--epochs",
        "2",
        "--backend",
        "cpu",
        "--quiet",
    ]);
    assert!(ok, "{said}");
    assert!(
        said.contains("loss.png"),
        "the resumed run redraws it: {said}"
    );
    let sections = std::fs::read_to_string(dir.join("report.json")).unwrap();
    let sections: serde_json::Value = serde_json::from_str(&sections).unwrap();
    let train = &sections["sections"][0];
    assert_eq!(train["name"], "train");
    assert!(
        train["command"].as_str().unwrap().contains("--resume"),
        "{train}"
    );
    assert!(
        train["earlier_commands"][0]
            .as_str()
            .unwrap()
            .contains("--limit 200"),
        "the first command is kept: {train}"
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let table = &html[html.find("id=\"metrics\"").unwrap()..];
    assert_eq!(table.matches("<tr>").count(), 3, "a header and both epochs");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_checkpoint_outside_a_run_directory_gets_no_report() {
    let dir = train_into("report-copy", "cpu", &["--epochs", "1", "--limit", "200"]);
    let loose = dir.with_file_name(format!(
        "{}-loose",
        dir.file_name().unwrap().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&loose);
    std::fs::create_dir_all(&loose).unwrap();
    let ckpt = loose.join("model.safetensors");
    std::fs::copy(dir.join("checkpoint.safetensors"), &ckpt).unwrap();
    let (ok, said) = run_cli(&[
        "map",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(ok, "{said}");
    assert!(loose.join("map.png").is_file());
    assert!(!loose.join("report.html").exists(), "{said}");
    assert!(!loose.join("report.json").exists());
    std::fs::remove_dir_all(loose).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
