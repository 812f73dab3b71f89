//! `burn-compress list`: the registry, sorted by name.

use burn_compress::AlgorithmEntry;

/// Arguments of `list`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let entries = AlgorithmEntry::all();
    if args.json {
        let rows: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.name, "kind": e.kind.to_string(), "summary": e.summary, "config_keys": e.config_keys,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut table = crate::table::table(&["name", "kind", "summary", "options"]);
    for e in entries {
        table.add_row(vec![
            e.name.to_string(),
            e.kind.to_string(),
            e.summary.to_string(),
            e.config_keys.join(", "),
        ]);
    }
    println!("{table}");
    Ok(())
}
