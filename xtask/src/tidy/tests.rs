//! Each checker against a small fixture that breaks its rule.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::*;

/// A scratch directory, removed on drop.
struct Fixture(PathBuf);

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("xtask-tidy-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create fixture dir");
        Fixture(dir)
    }

    fn write(&self, rel: &str, text: &str) -> &Fixture {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("create dirs");
        std::fs::write(path, text).expect("write fixture file");
        self
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const RULES: &str = "# Architecture

## Dependency rules

| crate | depends on | dev-dependencies may add |
|---|---|---|
| `core` | — | `testkit` |
| `engine` | `core` | `testkit` |
| `sink` | `core` | `testkit` |
| `testkit` | `core` | — |
| `cli` | `core`, `engine`, `sink` | `testkit` |

## Next section

| `not` | `a` | `rule` |
";

fn package(short: &str, deps: &[(&str, Option<&str>)]) -> Value {
    json!({
        "name": format!("taosbackup-{short}"),
        "manifest_path": format!("/ws/crates/{short}/Cargo.toml"),
        "targets": [],
        "dependencies": deps.iter().map(|(name, kind)| json!({
            "name": format!("taosbackup-{name}"),
            "kind": kind,
        })).chain([json!({"name": "serde", "kind": null})]).collect::<Vec<_>>(),
    })
}

#[test]
fn the_layering_table_is_read_from_its_section_only() {
    let layers = parse_layers(RULES).expect("parses");
    assert_eq!(
        layers.keys().cloned().collect::<Vec<_>>(),
        ["cli", "core", "engine", "sink", "testkit"]
    );
    assert_eq!(
        layers["cli"].deps,
        ["core", "engine", "sink"].map(String::from).into()
    );
    assert!(layers["core"].deps.is_empty());
    assert!(parse_layers("# no table here").is_err());
}

#[test]
fn the_repository_layering_table_parses() {
    let doc = std::fs::read_to_string(root().join(ARCHITECTURE_DOC)).expect("read the doc");
    let layers = parse_layers(&doc).expect("docs/architecture.md has the table");
    for short in [
        "core", "engine", "source", "sink", "cli", "testkit", "xtask",
    ] {
        assert!(layers.contains_key(short), "no row for {short}");
    }
}

#[test]
fn allowed_dependencies_pass() {
    let layers = parse_layers(RULES).expect("parses");
    let metadata = json!({"packages": [
        package("core", &[("testkit", Some("dev"))]),
        package("engine", &[("core", None), ("testkit", Some("dev"))]),
        package("sink", &[("core", None)]),
        package("testkit", &[("core", None)]),
        package(
            "cli",
            &[("core", None), ("engine", None), ("sink", None), ("testkit", Some("dev"))]
        ),
    ]});
    assert_eq!(check_layers(&metadata, &layers), []);
}

#[test]
fn forbidden_dependencies_fail_and_say_how_to_fix() {
    let layers = parse_layers(RULES).expect("parses");
    let metadata = json!({"packages": [
        package("core", &[]),
        // engine → sink: the layering's first rule.
        package("engine", &[("core", None), ("sink", None)]),
        // sink → engine, even for tests only.
        package("sink", &[("core", None), ("engine", Some("dev"))]),
        package("testkit", &[]),
        // testkit is dev-only; a build dependency counts as a normal one.
        package("cli", &[("core", None), ("testkit", None), ("testkit", Some("build"))]),
        // A crate without a row.
        package("extra", &[]),
    ]});
    let problems = check_layers(&metadata, &layers);
    let whats: Vec<&str> = problems.iter().map(|p| p.what.as_str()).collect();
    assert_eq!(problems.len(), 5, "{whats:#?}");
    assert!(
        whats[0].contains("`engine` has a dependency on `sink`"),
        "{whats:#?}"
    );
    assert!(
        whats[1].contains("`sink` has a dev-dependency on `engine`"),
        "{whats:#?}"
    );
    assert!(
        whats[2].contains("`cli` has a dependency on `testkit`"),
        "{whats:#?}"
    );
    assert!(
        whats[3].contains("`cli` has a dependency on `testkit`"),
        "{whats:#?}"
    );
    assert!(
        whats[4].contains("`extra`") && whats[4].contains("no row"),
        "{whats:#?}"
    );
    assert!(
        problems[0].fix.contains("crates/engine/Cargo.toml"),
        "{problems:#?}"
    );
    // A row for a crate that does not exist is stale too.
    let metadata = json!({"packages": [package("core", &[])]});
    let problems = check_layers(&metadata, &layers);
    assert!(
        problems.iter().any(|p| p
            .what
            .contains("names `cli`, which is not a workspace crate")),
        "{problems:#?}"
    );
}

#[test]
fn a_library_without_forbid_unsafe_fails() {
    let fx = Fixture::new("unsafe");
    fx.write("good/src/lib.rs", "//! Docs.\n#![forbid(unsafe_code)]\n")
        .write(
            "bad/src/lib.rs",
            "//! Docs.\n#![deny(missing_docs)]\n// #![forbid(unsafe_code)]\n",
        )
        .write("bin/src/main.rs", "fn main() {}\n");
    let target = |kind: &str, path: &str| json!({"kind": [kind], "src_path": fx.path().join(path).display().to_string()});
    let metadata = json!({"packages": [
        {"name": "good", "targets": [target("lib", "good/src/lib.rs")]},
        {"name": "bad", "targets": [target("rlib", "bad/src/lib.rs")]},
        {"name": "bin", "targets": [target("bin", "bin/src/main.rs")]},
    ]});
    let problems = check_unsafe(&metadata);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].what.contains("bad/src/lib.rs"), "{problems:#?}");
    assert!(problems[0].fix.contains("#![forbid(unsafe_code)]"));
}

#[test]
fn only_the_named_root_may_deny_unsafe_instead() {
    let fx = Fixture::new("deny-unsafe");
    fx.write(
        "crates/core/src/lib.rs",
        "//! Docs.\n#![deny(unsafe_code)]\n",
    )
    .write(
        "crates/other/src/lib.rs",
        "//! Docs.\n#![deny(unsafe_code)]\n",
    );
    let target = |path: &str| json!({"kind": ["lib"], "src_path": fx.path().join(path).display().to_string()});
    let metadata = json!({"packages": [
        {"name": "core", "targets": [target("crates/core/src/lib.rs")]},
        {"name": "other", "targets": [target("crates/other/src/lib.rs")]},
    ]});
    let problems = check_unsafe(&metadata);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].what.contains("crates/other/src/lib.rs"),
        "{problems:#?}"
    );
}

#[test]
fn stale_links_and_paths_fail_and_live_ones_pass() {
    let fx = Fixture::new("links");
    fx.write("crates/x/src/y.rs", "")
        .write(
            "docs/a.md",
            "# Title\n\n## The Format (v2)\n\nSee [readme](../README.md).\n",
        )
        .write(
            "README.md",
            "# Readme\n\n\
             Live: [a](docs/a.md), [anchor](docs/a.md#the-format-v2), [self](#readme), \
             [web](https://example.com/x.md), `crates/x/src/y.rs`, `crates/x/src/y.rs:12`, \
             `crates/x/`, `crates/*/src`, `tests/<crate>/main.rs`.\n\
             Stale: [gone](docs/gone.md), [bad anchor](docs/a.md#nope), \
             `crates/x/src/renamed.rs`.\n\
             In code, not a link: `[a](docs/none.md)`.\n\n\
             ```\ncrates/x/src/also_gone.rs [x](nowhere.md) `crates/q.rs`\n```\n\n\
             [def]: docs/missing.md\n",
        );
    let problems = check_links(fx.path(), &walk(fx.path()));
    let whats: Vec<&str> = problems.iter().map(|p| p.what.as_str()).collect();
    assert_eq!(problems.len(), 4, "{whats:#?}");
    assert!(
        whats[0].contains("README.md:4") && whats[0].contains("docs/gone.md"),
        "{whats:#?}"
    );
    assert!(whats[1].contains("no heading #nope"), "{whats:#?}");
    assert!(whats[2].contains("crates/x/src/renamed.rs"), "{whats:#?}");
    assert!(whats[3].contains("docs/missing.md"), "{whats:#?}");
}

#[test]
fn a_renamed_file_is_caught() {
    let fx = Fixture::new("rename");
    fx.write("crates/s/src/feed.rs", "")
        .write("docs/x.md", "The feed lives in `crates/s/src/feed.rs`.\n");
    assert_eq!(check_links(fx.path(), &walk(fx.path())), []);
    std::fs::rename(
        fx.path().join("crates/s/src/feed.rs"),
        fx.path().join("crates/s/src/tmq.rs"),
    )
    .expect("rename");
    let problems = check_links(fx.path(), &walk(fx.path()));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].what.contains("docs/x.md:1"), "{problems:#?}");
}

#[test]
fn mod_rs_fails_except_for_a_test_directorys_shared_module() {
    let fx = Fixture::new("modules");
    fx.write("crates/a/src/feed/mod.rs", "")
        .write("crates/a/src/feed/admin.rs", "")
        .write("crates/a/src/tests/common/mod.rs", "")
        .write("crates/a/tests/common/mod.rs", "")
        .write("tests/common/mod.rs", "")
        .write("target/debug/build/x/mod.rs", "");
    let problems = check_modules(&walk(fx.path()));
    let whats: Vec<&str> = problems.iter().map(|p| p.what.as_str()).collect();
    assert_eq!(whats.len(), 2, "{whats:#?}");
    assert!(whats[0].contains("crates/a/src/feed/mod.rs"), "{whats:#?}");
    assert!(
        problems[0].fix.contains("crates/a/src/feed.rs"),
        "{problems:#?}"
    );
    assert!(
        whats[1].contains("crates/a/src/tests/common/mod.rs"),
        "{whats:#?}"
    );
}

#[test]
fn slugs_follow_github() {
    assert_eq!(slug(" The Format (v2) "), "the-format-v2");
    assert_eq!(
        slug("`cargo xtask tidy`: checks"),
        "cargo-xtask-tidy-checks"
    );
    let a = anchors("# A\n## A\n```\n# not a heading\n```\n");
    assert_eq!(a, ["a", "a-1"].map(String::from).into());
}
