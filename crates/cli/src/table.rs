//! Table output shared by the subcommands.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

/// A table with the project's look and the given header.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    t
}

/// `0.5` -> `50.00%`.
pub fn percent(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}
