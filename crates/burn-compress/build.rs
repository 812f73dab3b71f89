//! Generates `algorithms.rs`: one `pub use <crate> as <short name>;` for every algorithm crate in
//! this crate's `[dependencies]` (names starting `prune-`, `quant-`, `distill-` or `search-`), plus
//! `CRATES`, their package names, and `BUILT_IN`, the registry names they submit (the
//! `name: "..."` (or the `const NAME` literal a `name: Type::NAME` points at) of each
//! `AlgorithmEntry {` literal in their sources; the registry test checks
//! these against the registry itself). Naming a crate is what links it, so its registry entries
//! (`inventory::submit!`) exist; adding an algorithm crate is then only a matter of listing it in
//! the workspace and in this crate's `Cargo.toml`.

use std::fmt::Write as _;
use std::path::Path;

/// Package-name prefixes of algorithm crates.
const PREFIXES: [&str; 4] = ["prune-", "quant-", "distill-", "search-"];

/// The dependency names in the `[dependencies]` table of a Cargo manifest: `name = ...`,
/// `name.workspace = true` and `[dependencies.name]` forms.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut section = String::new();
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).trim().to_string();
            if let Some(name) = section.strip_prefix("dependencies.") {
                names.push(name.trim().to_string());
            }
            continue;
        }
        if section != "dependencies" || line.is_empty() {
            continue;
        }
        let key = line
            .split(['=', '.'])
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        if !key.is_empty() {
            names.push(key.to_string());
        }
    }
    names
}

/// The `path = "..."` of each `name = { path = ... }` line of the workspace manifest's
/// `[workspace.dependencies]`.
fn workspace_path(workspace: &str, name: &str) -> Option<String> {
    workspace.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        if key.trim() != name {
            return None;
        }
        let after = value.split("path").nth(1)?;
        let start = after.find('"')? + 1;
        let end = start + after[start..].find('"')?;
        Some(after[start..end].to_string())
    })
}

/// The string literal of the associated `const NAME` that `path` (`Type::NAME`) names, when the
/// file defines it in `impl ... for Type` (the registry name of a `Layerwise` distiller).
fn const_literal(text: &str, path: &str) -> Option<String> {
    let (ty, konst) = path.rsplit_once("::")?;
    let body = text.split(&format!("for {ty} {{")).nth(1)?;
    let rest = body
        .split(&format!("const {konst}: &'static str = \""))
        .nth(1)?;
    Some(rest[..rest.find('"')?].to_string())
}

/// The registry names submitted in the `.rs` files under `dir`.
fn submitted_names(dir: &Path, names: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            submitted_names(&path, names);
        } else if path.extension().is_some_and(|e| e == "rs") {
            println!("cargo::rerun-if-changed={}", path.display());
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for block in text.split("AlgorithmEntry {").skip(1) {
                let name = block.trim_start().strip_prefix("name: ");
                if let Some(rest) = name.and_then(|n| n.strip_prefix('"'))
                    && let Some(end) = rest.find('"')
                {
                    names.push(rest[..end].to_string());
                } else if let Some(path) = name.and_then(|n| n.split(',').next()) {
                    // `name: Type::NAME`: the associated constant's literal in the same file.
                    names.extend(const_literal(&text, path.trim()));
                }
            }
        }
    }
}

/// Append `pub const NAME: &[&str] = &[...];` with its doc line to `out`.
fn str_list(out: &mut String, doc: &str, name: &str, items: &[String]) {
    let items = items
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(out, "\n/// {doc}\npub const {name}: &[&str] = &[{items}];");
}

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let manifest_path = Path::new(&dir).join("Cargo.toml");
    println!("cargo::rerun-if-changed={}", manifest_path.display());
    let manifest = std::fs::read_to_string(&manifest_path).expect("Cargo.toml is readable");
    let mut crates: Vec<String> = dependencies(&manifest)
        .into_iter()
        .filter(|n| PREFIXES.iter().any(|p| n.starts_with(p)))
        .collect();
    crates.sort();
    crates.dedup();
    let mut out = String::new();
    for name in &crates {
        let short = PREFIXES
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .unwrap_or(name)
            .replace('-', "_");
        let _ = writeln!(out, "pub use {} as {short};", name.replace('-', "_"));
    }
    str_list(
        &mut out,
        "Package names of the algorithm crates linked here, sorted (read from `Cargo.toml`).",
        "CRATES",
        &crates,
    );
    let workspace_manifest = Path::new(&dir).join("../../Cargo.toml");
    println!("cargo::rerun-if-changed={}", workspace_manifest.display());
    let workspace = std::fs::read_to_string(&workspace_manifest).unwrap_or_default();
    let mut names = Vec::new();
    let mut per_crate = String::new();
    for name in &crates {
        let mut own = Vec::new();
        if let Some(path) = workspace_path(&workspace, name) {
            submitted_names(
                &Path::new(&dir).join("../..").join(path).join("src"),
                &mut own,
            );
        }
        own.sort();
        let _ = write!(per_crate, "({name:?}, &{own:?}), ");
        names.extend(own);
    }
    names.sort();
    let _ = writeln!(
        out,
        "\n/// The registry names each crate in [`CRATES`] submits in its source, sorted.\n\
         pub const SUBMITTED: &[(&str, &[&str])] = &[{per_crate}];"
    );
    str_list(
        &mut out,
        "Registry names of the built-in algorithms (those the crates above submit), sorted.",
        "BUILT_IN",
        &names,
    );
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(Path::new(&out_dir).join("algorithms.rs"), out).expect("OUT_DIR is writable");
}
