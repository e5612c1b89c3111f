//! `cargo xtask tidy`: mechanical guards that cargo, rustfmt and clippy do not give, cheap
//! enough to run first in `cargo xtask ci`:
//!
//! - **layering**: the workspace's own dependencies (from `cargo metadata`) follow the table
//!   under "Dependency rules" in docs/architecture.md — the table is the rule, so tightening
//!   it is a one-line doc change;
//! - **unsafe**: every library crate's root says `#![forbid(unsafe_code)]`, or for the
//!   roots named in [`DENY_UNSAFE_ROOTS`], `#![deny(unsafe_code)]`;
//! - **links**: relative links in the Markdown files point at files (and headings) that exist,
//!   and code paths written in backticks (`crates/x/src/y.rs`) exist;
//! - **modules**: one module style, `foo.rs` beside `foo/`; no `mod.rs` except a shared
//!   module of an integration-test directory (see [`MOD_RS_ALLOWED`]).
//!
//! Each failure names the file, what is wrong, and how to fix it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{cargo, root};

/// One thing a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The check (`layering`, `unsafe`, `links`, `modules`).
    pub check: &'static str,
    /// What is wrong, naming the file or crate.
    pub what: String,
    /// How to fix it.
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}\n    fix: {}", self.check, self.what, self.fix)
    }
}

fn problem(check: &'static str, what: impl Into<String>, fix: impl Into<String>) -> Problem {
    Problem {
        check,
        what: what.into(),
        fix: fix.into(),
    }
}

/// `cargo xtask tidy`.
pub fn run(args: &[String]) -> Result<(), String> {
    if let Some(other) = args.first() {
        return Err(format!("tidy: unknown argument {other:?} (it takes none)"));
    }
    let root = root();
    let metadata = cargo_metadata()?;
    let mut problems = Vec::new();
    let doc_path = root.join(ARCHITECTURE_DOC);
    let doc = std::fs::read_to_string(&doc_path)
        .map_err(|e| format!("cannot read {}: {e}", doc_path.display()))?;
    match parse_layers(&doc) {
        Ok(layers) => problems.extend(check_layers(&metadata, &layers)),
        Err(e) => problems.push(e),
    }
    problems.extend(check_unsafe(&metadata));
    let files = walk(&root);
    problems.extend(check_links(&root, &files));
    problems.extend(check_modules(&files));
    if problems.is_empty() {
        println!("xtask tidy: layering, unsafe, links and module style are clean");
        return Ok(());
    }
    for p in &problems {
        eprintln!("{p}");
    }
    Err(format!(
        "tidy found {} problem(s), listed above",
        problems.len()
    ))
}

fn cargo_metadata() -> Result<Value, String> {
    let out = cargo()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata printed bad JSON: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Layering

/// The document whose "Dependency rules" table is the layering rule.
const ARCHITECTURE_DOC: &str = "docs/architecture.md";
/// The heading of that section.
const RULES_HEADING: &str = "## Dependency rules";

/// What one workspace crate may depend on inside the workspace (short names: the folder
/// under `crates/`, or `xtask`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    /// Normal and build dependencies.
    pub deps: BTreeSet<String>,
    /// What dev-dependencies may add.
    pub dev_deps: BTreeSet<String>,
}

/// Reads the table under [`RULES_HEADING`]: `| crate | depends on | dev-dependencies may add |`,
/// crate names in backticks (anything else in a cell, `—` or a reason, is prose).
pub fn parse_layers(doc: &str) -> Result<BTreeMap<String, Layer>, Problem> {
    let missing = || {
        problem(
            "layering",
            format!("{ARCHITECTURE_DOC} has no layering table under {RULES_HEADING:?}"),
            "restore the table `| crate | depends on | dev-dependencies may add |` with one row \
             per workspace crate, crate names in backticks",
        )
    };
    let section = doc.split_once(RULES_HEADING).ok_or_else(missing)?.1;
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut layers = BTreeMap::new();
    for line in section
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('|'))
    {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Some(name) = cells.first().and_then(|c| code_spans(c).into_iter().next()) else {
            continue; // the header or the separator row
        };
        if cells.len() != 3 {
            return Err(problem(
                "layering",
                format!(
                    "{ARCHITECTURE_DOC}: the layering row of `{name}` has {} cells, not 3",
                    cells.len()
                ),
                "write `| `crate` | `dep`, … | `dev-dep`, … |` (— for none)",
            ));
        }
        let layer = Layer {
            deps: code_spans(cells[1]).into_iter().collect(),
            dev_deps: code_spans(cells[2]).into_iter().collect(),
        };
        layers.insert(name, layer);
    }
    if layers.is_empty() {
        return Err(missing());
    }
    Ok(layers)
}

/// The short name of a workspace package: its folder (`crates/engine` → `engine`, `xtask`).
fn short_name(manifest_path: &str) -> String {
    Path::new(manifest_path)
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Checks every workspace package's workspace dependencies against `layers`.
pub fn check_layers(metadata: &Value, layers: &BTreeMap<String, Layer>) -> Vec<Problem> {
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    // Package name → short name, for the workspace's own packages.
    let ours: BTreeMap<String, String> = packages
        .iter()
        .filter_map(|p| {
            let name = p["name"].as_str()?;
            Some((name.to_owned(), short_name(p["manifest_path"].as_str()?)))
        })
        .collect();
    let mut problems = Vec::new();
    for short in layers.keys() {
        if !ours.values().any(|s| s == short) {
            problems.push(problem(
                "layering",
                format!("{ARCHITECTURE_DOC}'s layering table names `{short}`, which is not a workspace crate"),
                "remove its row, or correct the name (the crate's folder name)",
            ));
        }
    }
    for p in &packages {
        let (Some(name), Some(manifest)) = (p["name"].as_str(), p["manifest_path"].as_str()) else {
            continue;
        };
        let short = short_name(manifest);
        let Some(layer) = layers.get(&short) else {
            problems.push(problem(
                "layering",
                format!("workspace crate `{short}` ({name}) has no row in {ARCHITECTURE_DOC}'s layering table"),
                format!("add `| `{short}` | … | … |` under {RULES_HEADING:?}, saying what it may depend on"),
            ));
            continue;
        };
        for dep in p["dependencies"].as_array().into_iter().flatten() {
            let Some(dep_short) = dep["name"].as_str().and_then(|d| ours.get(d)) else {
                continue; // not one of ours
            };
            let dev = dep["kind"].as_str() == Some("dev");
            let allowed =
                layer.deps.contains(dep_short) || (dev && layer.dev_deps.contains(dep_short));
            if !allowed {
                let kind = if dev { "dev-dependency" } else { "dependency" };
                problems.push(problem(
                    "layering",
                    format!("`{short}` has a {kind} on `{dep_short}`, which {ARCHITECTURE_DOC} does not allow"),
                    format!(
                        "remove it from {} (engine, source and sink meet only through core's \
                         traits; testkit is for tests only), or change the rule in \
                         {ARCHITECTURE_DOC} if the architecture really changed",
                        relative_manifest(manifest)
                    ),
                ));
            }
        }
    }
    problems
}

fn relative_manifest(manifest: &str) -> String {
    let root = root();
    Path::new(manifest)
        .strip_prefix(&root)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| manifest.to_owned())
}

// ---------------------------------------------------------------------------------------------
// unsafe

/// The attribute every library root must carry.
const FORBID_UNSAFE: &str = "#![forbid(unsafe_code)]";

/// Library roots that may say `#![deny(unsafe_code)]` instead, each with why (documented in
/// docs/architecture.md): `taosbackup-core`'s `net` borrows a socket by its descriptor
/// number where the kernel refuses `pidfd_getfd`; `taosbackup-sink`'s `crypto` calls zstd's
/// fixed-parameter dictionary trainer, which no safe binding wraps.
const DENY_UNSAFE_ROOTS: &[&str] = &["crates/core/src/lib.rs", "crates/sink/src/lib.rs"];

/// The attribute those roots carry instead.
const DENY_UNSAFE: &str = "#![deny(unsafe_code)]";

/// Every library target's root file says [`FORBID_UNSAFE`].
pub fn check_unsafe(metadata: &Value) -> Vec<Problem> {
    let mut problems = Vec::new();
    for p in metadata["packages"].as_array().into_iter().flatten() {
        for target in p["targets"].as_array().into_iter().flatten() {
            let is_lib = target["kind"].as_array().is_some_and(|k| {
                k.iter()
                    .any(|k| k.as_str().is_some_and(|k| k.ends_with("lib")))
            });
            let Some(src) = target["src_path"].as_str().filter(|_| is_lib) else {
                continue;
            };
            let text = std::fs::read_to_string(src).unwrap_or_default();
            let denied = DENY_UNSAFE_ROOTS.iter().any(|r| src.ends_with(r))
                && has_attribute(&text, DENY_UNSAFE);
            if !denied && !has_attribute(&text, FORBID_UNSAFE) {
                problems.push(problem(
                    "unsafe",
                    format!(
                        "library root {} lacks {FORBID_UNSAFE}",
                        relative_manifest(src)
                    ),
                    format!(
                        "add {FORBID_UNSAFE} after the crate docs; a crate that really needs \
                         unsafe says so in docs/architecture.md and uses #![deny(unsafe_code)] \
                         with one #[allow(unsafe_code)] per use, each with a // SAFETY: comment \
                         (and this check is told about it)"
                    ),
                ));
            }
        }
    }
    problems
}

/// Whether `text` has the crate attribute `attr` on a line of its own.
fn has_attribute(text: &str, attr: &str) -> bool {
    text.lines().any(|l| l.trim() == attr)
}

// ---------------------------------------------------------------------------------------------
// Files

/// Folders never looked into: build output, tool installs, VCS data.
const SKIPPED_DIRS: &[&str] = &["target", ".git", ".venv", ".emulators", "node_modules"];

/// Every file under `root` (relative paths, sorted), skipping [`SKIPPED_DIRS`] and hidden
/// folders.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = dir.join(&name);
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !SKIPPED_DIRS.contains(&name.as_str())
                    && !name.starts_with('.')
                    && !name.starts_with("target-")
                {
                    stack.push(rel);
                }
            } else {
                files.push(rel);
            }
        }
    }
    files.sort();
    files
}

// ---------------------------------------------------------------------------------------------
// Links

/// Top-level folders whose paths, written in backticks in a Markdown file, must exist.
const PATH_ROOTS: &[&str] = &[
    "crates/",
    "xtask/",
    "docs/",
    "tests/",
    "examples/",
    "fuzz/",
    ".cargo/",
];

/// The contents of the inline code spans of `text` (single backticks).
fn code_spans(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `text` with its inline code spans removed (links inside code are not links).
fn outside_code(text: &str) -> String {
    text.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (a repeated heading gets `-1`, `-2`, …).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced || !t.starts_with('#') {
            continue;
        }
        let base = slug(t.trim_start_matches('#'));
        let n = seen.entry(base.clone()).or_default();
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The destinations of the inline links (`[text](dest)`) and link definitions
/// (`[label]: dest`) on one line (outside code).
fn link_targets(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(pos) = rest.find("](") {
        let tail = &rest[pos + 2..];
        let end = tail.find(')').unwrap_or(tail.len());
        let dest = tail[..end].split_whitespace().next().unwrap_or("");
        out.push(dest.trim_matches(|c| c == '<' || c == '>').to_owned());
        rest = &tail[end..];
    }
    let t = line.trim_start();
    if let Some(close) = t.strip_prefix('[').and_then(|r| r.find("]: ")) {
        let dest = t[close + 4..].split_whitespace().next().unwrap_or("");
        out.push(dest.to_owned());
    }
    out
}

/// Whether a code span is a repository path to check (not a pattern, command or placeholder).
fn as_repo_path(span: &str) -> Option<&str> {
    if !PATH_ROOTS.iter().any(|r| span.starts_with(r)) {
        return None;
    }
    let special = |c: char| c.is_whitespace() || "*?<>{}[]$|…,".contains(c);
    if span.contains(special) || span.contains("...") {
        return None;
    }
    // `path:12`, `path:12-30`, `path::item` name a place in the file.
    let path = span.split(':').next().unwrap_or(span);
    Some(path.trim_end_matches('/'))
}

/// Every Markdown file's relative links and backticked repository paths resolve.
pub fn check_links(root: &Path, files: &[PathBuf]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut anchor_cache: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    let mut anchors_of = |path: &Path| -> BTreeSet<String> {
        anchor_cache
            .entry(path.to_path_buf())
            .or_insert_with(|| {
                anchors(&std::fs::read_to_string(root.join(path)).unwrap_or_default())
            })
            .clone()
    };
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "md"))
    {
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        let dir = file.parent().unwrap_or(Path::new(""));
        let mut fenced = false;
        for (n, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if t.starts_with("```") || t.starts_with("~~~") {
                fenced = !fenced;
                continue;
            }
            if fenced {
                continue;
            }
            let at = format!("{}:{}", file.display(), n + 1);
            for dest in link_targets(&outside_code(line)) {
                if dest.is_empty() || dest.contains("://") || dest.starts_with("mailto:") {
                    continue;
                }
                let (path, anchor) = match dest.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (dest.as_str(), None),
                };
                let target = if path.is_empty() {
                    file.clone()
                } else {
                    normalize(&dir.join(path))
                };
                if !root.join(&target).exists() {
                    problems.push(problem(
                        "links",
                        format!("{at}: link to {dest} — {} does not exist", target.display()),
                        "point the link at the file's current path (relative to this file), or \
                         remove it",
                    ));
                    continue;
                }
                if let Some(anchor) =
                    anchor.filter(|_| target.extension().is_some_and(|e| e == "md"))
                {
                    if !anchors_of(&target).contains(anchor) {
                        problems.push(problem(
                            "links",
                            format!(
                                "{at}: link to {dest} — {} has no heading #{anchor}",
                                target.display()
                            ),
                            "use the anchor of an existing heading (lower case, punctuation \
                             dropped, spaces as dashes)",
                        ));
                    }
                }
            }
            for span in code_spans(line) {
                let Some(path) = as_repo_path(&span) else {
                    continue;
                };
                if !root.join(path).exists() {
                    problems.push(problem(
                        "links",
                        format!("{at}: `{span}` names {path}, which does not exist"),
                        "write the path as it is now (from the repository root), or drop the \
                         backticks if it is not a path of this repository",
                    ));
                }
            }
        }
    }
    problems
}

/// `a/b/../c` → `a/c` (without touching the filesystem).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Module style

/// The one place `mod.rs` is allowed: `<dir>/tests/<name>/mod.rs`, the shared module of an
/// integration-test directory. Cargo builds every `tests/*.rs` as a test binary of its own, so
/// `tests/common.rs` would be compiled (and run) as a test; `tests/common/mod.rs` is the Rust
/// book's pattern for code the test binaries share (ch. 11.3). Once a crate's tests are one
/// binary (`tests/<crate>/main.rs`), its shared code is a plain `common.rs` module beside
/// `main.rs` and this exception can go.
pub const MOD_RS_ALLOWED: &str = "tests/<name>/mod.rs";

fn mod_rs_allowed(path: &Path) -> bool {
    let parts: Vec<_> = path.components().map(|c| c.as_os_str()).collect();
    parts.len() >= 3 && parts[parts.len() - 3] == "tests" && !parts.contains(&"src".as_ref())
}

/// No `mod.rs` (except [`MOD_RS_ALLOWED`]); `foo.rs` + `foo/` everywhere.
pub fn check_modules(files: &[PathBuf]) -> Vec<Problem> {
    files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n == "mod.rs") && !mod_rs_allowed(f))
        .map(|f| {
            let dir = f.parent().unwrap_or(Path::new(""));
            problem(
                "modules",
                format!("{} uses the mod.rs module style", f.display()),
                format!(
                    "move it to {}.rs beside the {} folder (`git mv`); the only mod.rs allowed \
                     is {MOD_RS_ALLOWED}",
                    dir.display(),
                    dir.display()
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
