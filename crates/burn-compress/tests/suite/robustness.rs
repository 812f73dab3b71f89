//! Property tests: random and mutated TOML never panics the config or recipe parser; every
//! failure is a typed error with a message.

use burn_compress::CompressConfig;
use burn_compress::core::toml::{Table, Value};
use burn_compress::recipe::Recipe;
use proptest::prelude::*;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The valid configs and recipes the project ships, plus a short recipe with every step kind.
fn seeds() -> Vec<String> {
    std::env::set_current_dir(root()).unwrap();
    let mut texts = Vec::new();
    for dir in ["configs", "recipes"] {
        let mut files: Vec<_> = std::fs::read_dir(root().join(dir))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for f in files {
            texts.push(std::fs::read_to_string(f).unwrap());
        }
    }
    texts.push(
        "seed = 3\n[model]\narch = 'lenet5'\n[data]\npath = 'data/mnist5k.safetensors'\npixel_max = 255\n\
         [[step]]\nkind = 'train'\nmax_steps = 2\n[[step]]\nkind = 'prune'\nconfig = 'configs/lenet5-l1.toml'\n\
         schedule = 'linear'\ntotal_times = 2\n[[step]]\nkind = 'speedup'\n[[step]]\nkind = 'evaluate'\n\
         [[step]]\nkind = 'quantize'\nconfig = 'configs/lenet5-ptq-int8.toml'\nepochs = 1\naffine = 'requantize'\n\
         [[step]]\nkind = 'report'\ntable = 'out/t.txt'\n"
            .to_string(),
    );
    for t in &texts {
        assert!(t.parse::<Table>().is_ok(), "{t}");
    }
    texts
}

/// Both parsers on `text`: no panic (proptest reports one as a failure), and an error always
/// says something.
fn parse_both(text: &str) {
    if let Err(e) = CompressConfig::from_toml(text) {
        assert!(!e.to_string().is_empty());
    }
    if let Err(e) = Recipe::from_toml(text) {
        assert!(!e.context.is_empty() && !e.message.is_empty(), "{e:?}");
    }
}

/// Every key path in `table` (tables inside arrays included, by index).
fn paths(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        Value::Table(t) => {
            for (k, v) in t {
                prefix.push(k.clone());
                out.push(prefix.clone());
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                prefix.push(format!("#{i}"));
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

/// The table holding the last key of `path`, and that key.
fn parent<'a>(root: &'a mut Value, path: &[String]) -> Option<(&'a mut Table, String)> {
    let (last, init) = path.split_last()?;
    let mut at = root;
    for step in init {
        at = match (at, step.strip_prefix('#')) {
            (Value::Array(a), Some(i)) => a.get_mut(i.parse::<usize>().ok()?)?,
            (Value::Table(t), None) => t.get_mut(step)?,
            _ => return None,
        };
    }
    match at {
        Value::Table(t) => Some((t, last.clone())),
        _ => None,
    }
}

/// A value of another kind than `v`, chosen by `pick`.
fn swapped(v: &Value, pick: u64) -> Value {
    let choices = [
        Value::String("x".into()),
        Value::Integer(-1),
        Value::Integer(0),
        Value::Integer(i64::MAX),
        Value::Float(f64::NAN),
        Value::Float(-0.5),
        Value::Float(1e300),
        Value::Boolean(true),
        Value::Array(vec![Value::Integer(1), Value::String("y".into())]),
        Value::Array(vec![]),
        Value::Table(Table::new()),
    ];
    let others: Vec<&Value> = choices
        .iter()
        .filter(|c| std::mem::discriminant(*c) != std::mem::discriminant(v))
        .collect();
    others[pick as usize % others.len()].clone()
}

/// One mutation of a key or value of `doc`, chosen by `op` and `pick`.
fn mutate(doc: &mut Value, op: u8, pick: u64) {
    let mut all = Vec::new();
    paths(doc, &mut Vec::new(), &mut all);
    if all.is_empty() {
        return;
    }
    let path = all[pick as usize % all.len()].clone();
    let Some((table, key)) = parent(doc, &path) else {
        return;
    };
    let Some(value) = table.get(&key).cloned() else {
        return;
    };
    match op % 5 {
        // Delete the key.
        0 => {
            table.remove(&key);
        }
        // Rename it (a typo: a letter dropped or doubled).
        1 => {
            table.remove(&key);
            let cut = (pick as usize / 7) % key.len().max(1);
            let typo = if pick.is_multiple_of(2) {
                format!("{}{}", &key[..cut], key.get(cut + 1..).unwrap_or(""))
            } else {
                format!("{}{}", &key[..cut], &key[cut..].repeat(2))
            };
            table.insert(typo, value);
        }
        // Swap the value's type.
        2 => {
            table.insert(key, swapped(&value, pick / 11));
        }
        // Duplicate the entry under a new key.
        3 => {
            table.insert(format!("{key}_{}", pick % 3), value);
        }
        // Numbers out of range, strings that name nothing.
        _ => {
            let new = match value {
                Value::Integer(i) => Value::Integer(i.wrapping_neg().wrapping_sub(pick as i64 % 3)),
                Value::Float(f) => Value::Float(-f - 1.0),
                Value::String(s) => Value::String(format!("{s}-{}", pick % 10)),
                other => swapped(&other, pick),
            };
            table.insert(key, new);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics_the_parsers(
        chars in proptest::collection::vec(
            proptest::sample::select(
                "[]{}=.,'\"\n #-+_0123456789eEnaflsetrukidpmgoc".chars().collect::<Vec<_>>()
            ),
            0..160,
        )
    ) {
        let text: String = chars.into_iter().collect();
        parse_both(&text);
    }

    #[test]
    fn mutated_valid_configs_and_recipes_fail_with_typed_errors(
        which in any::<usize>(),
        mutations in proptest::collection::vec((any::<u8>(), any::<u64>()), 1..4),
    ) {
        let seeds = seeds();
        let mut doc = Value::Table(seeds[which % seeds.len()].parse::<Table>().unwrap());
        for (op, pick) in mutations {
            mutate(&mut doc, op, pick);
        }
        let text = burn_compress::core::toml::to_string(&doc).unwrap_or_default();
        parse_both(&text);
    }

    #[test]
    fn line_level_edits_of_valid_files_never_panic_the_parsers(
        which in any::<usize>(),
        line in any::<usize>(),
        op in 0u8..3,
    ) {
        let seeds = seeds();
        let mut lines: Vec<String> = seeds[which % seeds.len()].lines().map(String::from).collect();
        let i = line % lines.len().max(1);
        match op {
            // A duplicated line: duplicate keys and tables are TOML errors.
            0 => lines.insert(i, lines[i].clone()),
            1 => {
                lines.remove(i);
            }
            // A line cut in half.
            _ => {
                let l = &lines[i];
                let cut = l.char_indices().nth(l.chars().count() / 2).map_or(0, |(b, _)| b);
                lines[i] = l[..cut].to_string();
            }
        }
        parse_both(&lines.join("\n"));
    }
}

#[test]
fn the_shipped_configs_and_recipes_parse() {
    for text in seeds() {
        let config = CompressConfig::from_toml(&text);
        let recipe = Recipe::from_toml(&text);
        assert!(
            config.is_ok() || recipe.is_ok(),
            "{text}\n{config:?}\n{recipe:?}"
        );
    }
}
