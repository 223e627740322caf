//! report.json: what each command that worked on a run's checkpoint adds to its report, one section per
//! command name (`train`, `map`, `retrieve`, …), replaced when that command runs again.
//!
//! The report is regenerated from this file (with config.json, metrics.csv and the directory's PNGs)
//! every time a section changes, so no command needs to know what the others wrote, and a report.html
//! deleted by hand comes back with the next command.

use std::fs::{File, OpenOptions};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ReportError;

/// The file the sections are kept in, in the run directory.
pub const SECTIONS_FILE: &str = "report.json";
/// Held (blocking) while report.json is read, changed and report.html rewritten, so two commands
/// finishing together both keep their sections.
const LOCK_FILE: &str = ".report.lock";
/// Earlier command lines a section remembers (a run resumed many times).
const EARLIER_KEPT: usize = 10;

/// One command's part of the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// The subcommand (`train`, `map`, …): a section of the same name is replaced.
    pub name: String,
    /// The command line that wrote it, as a shell would take it.
    pub command: String,
    /// The command lines of the sections it replaced, most recent first (a resumed run's earlier ones).
    #[serde(default)]
    pub earlier_commands: Vec<String>,
    /// (what, value) pairs: the numbers the command printed.
    #[serde(default)]
    pub figures: Vec<(String, String)>,
    #[serde(default)]
    pub pictures: Vec<Picture>,
}

/// A picture a section shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Picture {
    /// Relative to the run directory, with `/` separators (`map.png`, `../elsewhere/map.png`); an
    /// absolute path where no relative one exists.
    pub path: String,
    pub caption: String,
}

/// Everything report.json holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sections {
    pub sections: Vec<Section>,
}

impl Sections {
    /// `DIR/report.json`, or no sections when there is none yet.
    pub fn read(dir: &Path) -> Result<Sections, ReportError> {
        let path = dir.join(SECTIONS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Sections::default()),
            Err(e) => {
                return Err(ReportError::Read {
                    path,
                    problem: e.to_string(),
                });
            }
        };
        serde_json::from_str(&text).map_err(|e| ReportError::Read {
            path,
            problem: format!(
                "not a report.json this version understands ({e}); delete it, and the next command \
                 starts a new one"
            ),
        })
    }

    /// Puts `section` in place of the one of the same name (keeping its place and its command line
    /// among the earlier ones), or after the others; `train`'s section always comes first.
    pub fn replace(&mut self, mut section: Section) {
        match self.sections.iter().position(|s| s.name == section.name) {
            Some(at) => {
                let old = &self.sections[at];
                if old.command != section.command {
                    section.earlier_commands.push(old.command.clone());
                }
                for c in &old.earlier_commands {
                    if *c != section.command && !section.earlier_commands.contains(c) {
                        section.earlier_commands.push(c.clone());
                    }
                }
                section.earlier_commands.truncate(EARLIER_KEPT);
                self.sections[at] = section;
            }
            None => self.sections.push(section),
        }
        self.sections.sort_by_key(|s| s.name != "train");
    }

    /// Writes `DIR/report.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<(), ReportError> {
        let path = dir.join(SECTIONS_FILE);
        let text = serde_json::to_string_pretty(self).expect("sections serialise");
        super::png::write_text_atomically(&path, &format!("{text}\n"))
    }
}

/// Holds `DIR/.report.lock` until dropped (the system drops it if the process dies).
pub struct ReportLock {
    _file: File,
}

impl ReportLock {
    pub fn take(dir: &Path) -> Result<ReportLock, ReportError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| ReportError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        file.lock().map_err(io)?;
        Ok(ReportLock { _file: file })
    }
}

/// This process's command line as one could type it again: the program by its file name, arguments
/// quoted where a shell would split or expand them.
pub fn command_line() -> String {
    let mut args = std::env::args_os();
    let program = args
        .next()
        .map(|p| {
            Path::new(&p)
                .file_name()
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_else(|| "gpu-ae".into());
    std::iter::once(program)
        .chain(args.map(|a| shell_quoted(&a.to_string_lossy())))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quoted(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// `picture` as the report's link to it: relative to `dir` (both made absolute first), `/`-separated.
/// `None` when no relative path leads there (another drive).
pub fn relative_link(dir: &Path, picture: &Path) -> Option<String> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let picture = match std::fs::canonicalize(picture) {
        Ok(p) => p,
        // Not written (yet): as given, made absolute.
        Err(_) => std::path::absolute(picture).ok()?,
    };
    let (d, p): (Vec<Component>, Vec<Component>) =
        (dir.components().collect(), picture.components().collect());
    if d.first() != p.first() {
        return None;
    }
    let common = d.iter().zip(&p).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_string(); d.len() - common];
    parts.extend(
        p[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    Some(parts.join("/"))
}

/// Whether `dir` is a run directory (`gpu-ae train` wrote its config.json there): only those get a
/// report, so a checkpoint copied into some folder does not litter it.
pub fn is_run_dir(dir: &Path) -> bool {
    dir.join("config.json").is_file()
}

/// The pictures of `sections` that lie inside the run directory, as paths under `dir`.
pub fn own_pictures(dir: &Path, sections: &Sections) -> Vec<PathBuf> {
    sections
        .sections
        .iter()
        .flat_map(|s| &s.pictures)
        .filter(|p| !p.path.starts_with("..") && !Path::new(&p.path).is_absolute())
        .map(|p| dir.join(&p.path))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(name: &str, command: &str) -> Section {
        Section {
            name: name.into(),
            command: command.into(),
            earlier_commands: Vec::new(),
            figures: vec![("mAP".into(), "0.5".into())],
            pictures: Vec::new(),
        }
    }

    #[test]
    fn a_command_run_again_replaces_its_section_in_place_and_train_comes_first() {
        let mut s = Sections::default();
        s.replace(section("map", "gpu-ae map a"));
        s.replace(section("retrieve", "gpu-ae retrieve"));
        s.replace(section("train", "gpu-ae train"));
        s.replace(section("map", "gpu-ae map b"));
        let names: Vec<&str> = s.sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["train", "map", "retrieve"]);
        assert_eq!(s.sections[1].command, "gpu-ae map b");
        assert_eq!(s.sections[1].earlier_commands, ["gpu-ae map a"]);
    }

    #[test]
    fn arguments_a_shell_would_split_are_quoted() {
        assert_eq!(shell_quoted("--out"), "--out");
        assert_eq!(shell_quoted("runs/ae-1"), "runs/ae-1");
        assert_eq!(shell_quoted("my runs"), "'my runs'");
        assert_eq!(shell_quoted("it's"), r"'it'\''s'");
        assert_eq!(shell_quoted(""), "''");
    }

    #[test]
    fn links_lead_from_the_run_directory_to_the_picture() {
        let root = std::env::temp_dir().join(format!("gpu-ae-links-{}", std::process::id()));
        let run = root.join("runs/ae-1");
        let other = root.join("pictures");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(run.join("map.png"), b"x").unwrap();
        std::fs::write(other.join("map.png"), b"x").unwrap();
        assert_eq!(
            relative_link(&run, &run.join("map.png")).unwrap(),
            "map.png"
        );
        assert_eq!(
            relative_link(&run, &other.join("map.png")).unwrap(),
            "../../pictures/map.png"
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn an_unreadable_report_json_is_named_with_what_to_do() {
        let dir = std::env::temp_dir().join(format!("gpu-ae-sections-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(SECTIONS_FILE), "{ not json").unwrap();
        let err = Sections::read(&dir).unwrap_err().to_string();
        assert!(
            err.contains("report.json") && err.contains("delete it"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
