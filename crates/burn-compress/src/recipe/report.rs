//! `kind = "report"`: write the stages recorded so far.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::run::{RunReport, Stage};
use super::{RecipeError, err};

/// A report step: writes the stages recorded so far as a text table (`table = "out/stages.txt"`)
/// and/or as JSON (`json = "out/stages.json"`, the shape of [`RunReport`]). With neither key it
/// writes nothing (the `burn-compress run` command prints the table at the end anyway).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportStep {
    /// Where to write the stage table (text).
    pub table: Option<PathBuf>,
    /// Where to write the stages as JSON.
    pub json: Option<PathBuf>,
}

/// The columns of a stage table, as the text table and the command line print them.
pub const STAGE_COLUMNS: [&str; 6] = [
    "stage",
    "params",
    "MACs",
    "file bytes",
    "latency (batch 64, CPU)",
    "test accuracy",
];

/// The stages as an aligned text table: stage, params, MACs, file bytes, latency, accuracy.
pub fn stage_table(stages: &[Stage]) -> String {
    let header = STAGE_COLUMNS;
    let rows: Vec<[String; 6]> = stages
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.params.to_string(),
                s.macs.to_string(),
                s.bytes.to_string(),
                format!("{:.2} ms", s.latency_ms),
                format!("{:.2}%", s.accuracy * 100.0),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].len())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[&str]| {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                if c == 0 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(&header);
    out.push('\n');
    for r in &rows {
        out.push_str(&line(&r.iter().map(String::as_str).collect::<Vec<_>>()));
        out.push('\n');
    }
    out
}

fn write(path: &Path, text: &str, ctx: &str) -> Result<(), RecipeError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| err(ctx, format!("creating '{}': {e}", parent.display())))?;
    }
    std::fs::write(path, text).map_err(|e| err(ctx, format!("writing '{}': {e}", path.display())))
}

impl ReportStep {
    /// Write `report`'s stages where this step says.
    ///
    /// # Errors
    /// [`RecipeError`] naming the file that could not be written.
    pub fn write(&self, report: &RunReport, ctx: &str) -> Result<(), RecipeError> {
        if let Some(path) = &self.table {
            write(path, &stage_table(&report.stages), ctx)?;
        }
        if let Some(path) = &self.json {
            let text = serde_json::to_string_pretty(report).map_err(|e| err(ctx, e))?;
            write(path, &text, ctx)?;
        }
        Ok(())
    }
}
