//! report.html: one page per run directory that a person opens from the file system, offline: the
//! command lines, the configuration, the metrics table, and every picture of the directory with a
//! caption saying what it shows. Inline CSS only, no script, pictures by relative path, every text
//! HTML-escaped.
//!
//! `train` writes the first section; every command that works on a run's checkpoint (`map`,
//! `retrieve`, `pca --checkpoint`, …) adds its own with [`add_section`], which keeps the sections in
//! report.json ([`super::sections`]) and regenerates the whole page from config.json, metrics.csv,
//! report.json and the directory's PNGs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::ReportError;
use super::metrics::{self, MetricsTable};
use super::sections::{self, Picture, ReportLock, Section, Sections};

/// The page, in the run directory.
pub const REPORT_FILE: &str = "report.html";

/// Adds the section `name` (the subcommand: `map`, `classify`, …) to the report of `run_dir`, replacing
/// an earlier section of that name, and rewrites report.html. The section shows this process's command
/// line, `figures` as a two-column table of (what, value), and `pictures` — (the PNG's path as the
/// command wrote it, a caption saying what it shows) — linked relative to `run_dir`, so a picture
/// written elsewhere with `--out` is still shown.
///
/// `run_dir` is the directory of the checkpoint the command read. Only a run directory (one holding the
/// config.json `train` writes) gets a report: elsewhere nothing is written and the answer is `Ok(None)`.
/// Otherwise it is the path of report.html. Both files are written atomically; a report.json that
/// cannot be read is an error naming it, and then nothing changes.
pub fn add_section(
    run_dir: &Path,
    name: &str,
    figures: &[(String, String)],
    pictures: &[(PathBuf, String)],
) -> Result<Option<PathBuf>, ReportError> {
    if !sections::is_run_dir(run_dir) {
        return Ok(None);
    }
    let section = Section {
        name: name.to_string(),
        command: sections::command_line(),
        earlier_commands: Vec::new(),
        figures: figures.to_vec(),
        pictures: pictures
            .iter()
            .map(|(path, caption)| Picture {
                path: sections::relative_link(run_dir, path)
                    .unwrap_or_else(|| path.display().to_string()),
                caption: caption.clone(),
            })
            .collect(),
    };
    let _lock = ReportLock::take(run_dir)?;
    let mut all = Sections::read(run_dir)?;
    all.replace(section);
    all.write(run_dir)?;
    write_report(run_dir, &all).map(Some)
}

/// Rewrites `DIR/report.html` from what the directory holds now, the sections unchanged.
pub fn refresh(run_dir: &Path) -> Result<PathBuf, ReportError> {
    let _lock = ReportLock::take(run_dir)?;
    let all = Sections::read(run_dir)?;
    write_report(run_dir, &all)
}

fn write_report(dir: &Path, all: &Sections) -> Result<PathBuf, ReportError> {
    let config = std::fs::read_to_string(dir.join("config.json")).ok();
    let metrics = MetricsTable::read(&dir.join(metrics::FILE)).ok();
    let page = render(&Page {
        dir_name: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string()),
        config: config.as_deref(),
        metrics: metrics.as_ref(),
        sections: all,
        pngs: &pngs_in(dir),
        exists: &|link: &str| link_target(dir, link).is_file(),
    });
    let path = dir.join(REPORT_FILE);
    super::png::write_text_atomically(&path, &page)?;
    Ok(path)
}

/// Where a picture link of the report points, on this machine.
fn link_target(dir: &Path, link: &str) -> PathBuf {
    match Path::new(link).is_absolute() {
        true => PathBuf::from(link),
        false => dir.join(link),
    }
}

/// The names of the PNG files in `dir` (not hidden temporaries), sorted.
fn pngs_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| !n.starts_with('.') && n.to_ascii_lowercase().ends_with(".png"))
        .collect();
    names.sort();
    names
}

/// What the page is made of.
pub struct Page<'a> {
    pub dir_name: String,
    /// config.json's text, if the directory has one.
    pub config: Option<&'a str>,
    pub metrics: Option<&'a MetricsTable>,
    pub sections: &'a Sections,
    /// The PNG files of the directory (names).
    pub pngs: &'a [String],
    /// Whether a picture link leads to a file (a missing picture gets a note, not a broken image).
    pub exists: &'a dyn Fn(&str) -> bool,
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;\
max-width:1200px;padding:0 1em;color:#222;line-height:1.45}\
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}\
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;border:1px solid #e2e2e2}\
code{font-family:ui-monospace,Menlo,Consolas,monospace}pre.command{white-space:pre-wrap;overflow-wrap:anywhere}\
table{border-collapse:collapse;margin:.6em 0}\
td,th{border:1px solid #ddd;padding:.2em .6em;text-align:right;font-variant-numeric:tabular-nums}\
th{background:#f0f0f0}td.text,th.text{text-align:left}\
.scroll{max-height:32em;max-width:100%;overflow:auto}\
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #ddd}\
figcaption{color:#444;margin-top:.3em}.muted{color:#666}.missing{color:#a00}\
nav a{margin-right:1em}";

/// The whole page.
pub fn render(page: &Page) -> String {
    let mut h = String::new();
    let variant = page
        .config
        .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
        .and_then(|v| {
            v.get("variant")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        });
    let title = match &variant {
        Some(v) => format!("gpu-ae run {}: {v}", page.dir_name),
        None => format!("gpu-ae run {}", page.dir_name),
    };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    h.push_str(
        "<p class=\"muted\">Written by gpu-ae; every command that works on this run's checkpoint adds \
         its section and rewrites this page.</p>\n<nav>",
    );
    for s in &page.sections.sections {
        let _ = write!(
            h,
            "<a href=\"#{}\">{}</a>",
            anchor(&s.name),
            escape(&s.name)
        );
    }
    h.push_str(
        "<a href=\"#metrics\">metrics</a><a href=\"#configuration\">configuration</a></nav>\n",
    );
    let mut shown: Vec<&str> = Vec::new();
    for s in &page.sections.sections {
        section(&mut h, s, page);
        shown.extend(s.pictures.iter().map(|p| p.path.as_str()));
    }
    h.push_str("<h2 id=\"metrics\">Metrics per epoch</h2>\n");
    match page.metrics {
        Some(m) => metrics_table(&mut h, m),
        None => {
            h.push_str("<p class=\"missing\">This directory has no readable metrics.csv.</p>\n")
        }
    }
    h.push_str("<h2 id=\"configuration\">Configuration</h2>\n");
    match page.config {
        Some(c) => {
            h.push_str("<p>config.json: what the checkpoint stores and <code>--resume</code> continues.</p>\n");
            let _ = writeln!(h, "<pre><code>{}</code></pre>", escape(c.trim_end()));
        }
        None => h.push_str("<p class=\"missing\">This directory has no config.json.</p>\n"),
    }
    let others: Vec<&String> = page
        .pngs
        .iter()
        .filter(|n| !shown.contains(&n.as_str()))
        .collect();
    if !others.is_empty() {
        h.push_str("<h2 id=\"other-pictures\">Other pictures in this directory</h2>\n");
        for name in others {
            figure(
                &mut h,
                name,
                &format!("{name}: no command recorded what it shows"),
            );
        }
    }
    h.push_str("</body>\n</html>\n");
    h
}

/// One command's section: its command line (and earlier ones), its figures, its pictures.
fn section(h: &mut String, s: &Section, page: &Page) {
    let _ = writeln!(
        h,
        "<h2 id=\"{}\">gpu-ae {}</h2>",
        anchor(&s.name),
        escape(&s.name)
    );
    let _ = writeln!(
        h,
        "<pre class=\"command\"><code>{}</code></pre>",
        escape(&s.command)
    );
    if !s.earlier_commands.is_empty() {
        h.push_str(
            "<p class=\"muted\">Earlier, most recent first:</p>\n<pre class=\"command\"><code>",
        );
        for c in &s.earlier_commands {
            let _ = writeln!(h, "{}", escape(c));
        }
        h.push_str("</code></pre>\n");
    }
    if !s.figures.is_empty() {
        h.push_str("<table>\n");
        for (what, value) in &s.figures {
            let _ = writeln!(
                h,
                "<tr><th class=\"text\">{}</th><td class=\"text\">{}</td></tr>",
                escape(what),
                escape(value)
            );
        }
        h.push_str("</table>\n");
    }
    for p in &s.pictures {
        if (page.exists)(&p.path) {
            figure(h, &p.path, &p.caption);
        } else {
            let _ = writeln!(
                h,
                "<p class=\"missing\">{} is missing: it showed {}</p>",
                escape(&p.path),
                escape(&p.caption)
            );
        }
    }
}

fn figure(h: &mut String, link: &str, caption: &str) {
    let _ = writeln!(
        h,
        "<figure><img src=\"{}\" alt=\"{}\"><figcaption><code>{}</code>: {}</figcaption></figure>",
        escape(&url(link)),
        escape(caption),
        escape(link),
        escape(caption)
    );
}

/// metrics.csv as a table, numbers to six significant digits (metrics.csv keeps every digit).
fn metrics_table(h: &mut String, m: &MetricsTable) {
    csv_table(
        h,
        "metrics.csv, one line per epoch (numbers to six significant digits; the file keeps every digit).",
        m,
    );
}

/// A CSV file's table under the paragraph `intro`, numbers to six significant digits.
fn csv_table(h: &mut String, intro: &str, m: &MetricsTable) {
    let _ = write!(
        h,
        "<p>{}</p>\n<div class=\"scroll\"><table>\n<tr>",
        escape(intro)
    );
    for c in &m.header {
        let _ = write!(h, "<th>{}</th>", escape(c));
    }
    h.push_str("</tr>\n");
    for row in &m.rows {
        h.push_str("<tr>");
        for cell in row {
            match cell.parse::<f64>() {
                Ok(v) => {
                    let _ = write!(h, "<td>{}</td>", escape(&significant(cell, v)));
                }
                Err(_) => {
                    let _ = write!(h, "<td class=\"text\">{}</td>", escape(cell));
                }
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table></div>\n");
}

/// What a comparison page (of `gpu-ae sweep` or `gpu-ae compare`) shows.
pub struct ComparisonPage<'a> {
    /// `sweep` or `compare`.
    pub kind: &'a str,
    pub command: String,
    /// comparison.csv, read back.
    pub table: &'a MetricsTable,
    /// (file name in the directory, what it shows).
    pub pictures: &'a [(String, String)],
    /// (run name, link to its report.html relative to the directory, or `None` when it has none).
    pub runs: &'a [(String, Option<String>)],
    /// Lines said under the table (runs that failed, …).
    pub notes: &'a [String],
}

/// Writes `DIR/report.html` for a comparison (atomically); returns its path.
pub fn write_comparison_page(dir: &Path, page: &ComparisonPage) -> Result<PathBuf, ReportError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let title = format!(
        "gpu-ae {} {name}: {} runs",
        page.kind,
        page.table.rows.len()
    );
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    let _ = writeln!(
        h,
        "<h2 id=\"{}\">gpu-ae {}</h2>\n<pre class=\"command\"><code>{}</code></pre>",
        anchor(page.kind),
        escape(page.kind),
        escape(&page.command)
    );
    csv_table(
        &mut h,
        "comparison.csv: a line per run, with the values that differ between the runs, then the last \
         epoch's losses and terms and the seconds spent training (numbers to six significant digits; \
         the file keeps every digit).",
        page.table,
    );
    for note in page.notes {
        let _ = writeln!(h, "<p class=\"missing\">{}</p>", escape(note));
    }
    for (file, caption) in page.pictures {
        match dir.join(file).is_file() {
            true => figure(&mut h, file, caption),
            false => {
                let _ = writeln!(
                    h,
                    "<p class=\"missing\">{} is missing: it showed {}</p>",
                    escape(file),
                    escape(caption)
                );
            }
        }
    }
    h.push_str("<h2 id=\"runs\">The runs</h2>\n<ul>\n");
    for (run, link) in page.runs {
        match link {
            Some(link) => {
                let _ = writeln!(
                    h,
                    "<li><a href=\"{}\">{}</a></li>",
                    escape(&url(link)),
                    escape(run)
                );
            }
            None => {
                let _ = writeln!(h, "<li>{} (no report.html)</li>", escape(run));
            }
        }
    }
    h.push_str("</ul>\n</body>\n</html>\n");
    let path = dir.join(REPORT_FILE);
    super::png::write_text_atomically(&path, &h)?;
    Ok(path)
}

/// `v` (read from `text`) with at most six significant digits; integers as written.
fn significant(text: &str, v: f64) -> String {
    if !text.contains(['.', 'e', 'E']) || !v.is_finite() || v == 0.0 {
        return text.to_string();
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-4..6).contains(&magnitude) {
        return format!("{v:.5e}");
    }
    let decimals = (5 - magnitude).max(0) as usize;
    let s = format!("{v:.decimals$}");
    match s.contains('.') {
        true => s.trim_end_matches('0').trim_end_matches('.').to_string(),
        false => s,
    }
}

/// `s` safe in HTML text and in a quoted attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A picture link as a URL: relative links percent-encoded byte by byte (`/` kept), absolute paths as
/// `file://` URLs.
fn url(link: &str) -> String {
    let encoded: String = link
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect();
    match link.starts_with('/') {
        true => format!("file://{encoded}"),
        false => encoded,
    }
}

/// A section's id in the page: its name with anything but letters, digits and `-` as `-`.
fn anchor(name: &str) -> String {
    let id: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("section-{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_with(sections: &Sections, pngs: &[String], config: Option<&str>) -> String {
        let metrics = MetricsTable {
            header: vec!["epoch".into(), "train_loss".into(), "phase".into()],
            rows: vec![vec![
                "1".into(),
                "0.6831433354591837".into(),
                "<fine>".into(),
            ]],
        };
        render(&Page {
            dir_name: "ae-1".into(),
            config,
            metrics: Some(&metrics),
            sections,
            pngs,
            exists: &|link| link != "gone.png",
        })
    }

    #[test]
    fn every_text_is_escaped() {
        let sections = Sections {
            sections: vec![Section {
                name: "map".into(),
                command: "gpu-ae map --out '<b>&x.png'".into(),
                earlier_commands: vec![],
                figures: vec![("a < b".into(), "\"1\"".into())],
                pictures: vec![Picture {
                    path: "<b>&x.png".into(),
                    caption: "codes <script>".into(),
                }],
            }],
        };
        let html = page_with(
            &sections,
            &[],
            Some("{\"variant\": \"ae<script>\", \"seed\": 0}"),
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains("ae&lt;script&gt;"));
        assert!(html.contains("src=\"%3Cb%3E%26x.png\""), "{html}");
        assert!(html.contains("&lt;fine&gt;"));
    }

    #[test]
    fn pictures_no_section_claims_are_shown_under_other_pictures() {
        let sections = Sections {
            sections: vec![Section {
                name: "train".into(),
                command: "gpu-ae train".into(),
                earlier_commands: vec![],
                figures: vec![],
                pictures: vec![
                    Picture {
                        path: "loss.png".into(),
                        caption: "loss per epoch".into(),
                    },
                    Picture {
                        path: "gone.png".into(),
                        caption: "something".into(),
                    },
                ],
            }],
        };
        let html = page_with(&sections, &["loss.png".into(), "mine.png".into()], None);
        assert_eq!(html.matches("<img src=\"loss.png\"").count(), 1);
        assert!(html.contains("<img src=\"mine.png\""));
        assert!(html.contains("Other pictures"));
        assert!(
            html.contains("gone.png is missing"),
            "no broken image: {html}"
        );
        assert!(!html.contains("<img src=\"gone.png\""));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        let html = page_with(&Sections::default(), &["loss.png".into()], Some("{}"));
        for forbidden in ["<script", "<link", "http:", "https:", "@import", "url("] {
            assert!(!html.contains(forbidden), "{forbidden} in {html}");
        }
    }

    #[test]
    fn metrics_show_six_significant_digits() {
        assert_eq!(
            significant("0.6831433354591837", 0.6831433354591837),
            "0.683143"
        );
        assert_eq!(significant("82.0919609375", 82.0919609375), "82.092");
        assert_eq!(significant("469", 469.0), "469");
        assert_eq!(significant("100405.4", 100405.4), "100405");
        assert_eq!(significant("0.000012345678", 0.000012345678), "1.23457e-5");
    }
}
