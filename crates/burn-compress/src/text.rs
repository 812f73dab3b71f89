//! Plain-text corpora for language-model recipes: reading a decoded Austen novel
//! (`data/external/austen/<novel>.txt`, written by `cargo xtask fetch austen`) and splitting
//! it into sentences.
//!
//! The splitter is deliberately simple and deterministic (no language model, no locale data):
//! lines are joined into paragraphs at blank lines, headings in capitals (`CHAPTER I`,
//! `VOLUME II`) are dropped, Project Gutenberg's `_italics_` underscores are removed, and a
//! sentence ends at `.`, `!` or `?` (optionally followed by closing quotes or brackets) before
//! whitespace, except after the titles `Mr.`, `Mrs.`, `Dr.`, `St.`, `Col.` and `Esq.`.

use std::path::{Path, PathBuf};

/// Reading a text corpus failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// The file is missing or unreadable; the message names the fetch command when missing.
    #[error("cannot read '{path}': {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Titles whose final period does not end a sentence.
const TITLES: [&str; 6] = ["Mr", "Mrs", "Dr", "St", "Col", "Esq"];

/// Read a UTF-8 text file; a missing file names `cargo xtask fetch FETCH`.
///
/// # Errors
/// [`TextError::Read`] naming the path (and the fetch command when the file does not exist).
pub fn read_text(path: &Path, fetch: &str) -> Result<String, TextError> {
    std::fs::read_to_string(path).map_err(|e| TextError::Read {
        path: path.to_path_buf(),
        message: match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("no such file (run `cargo xtask fetch {fetch}`)")
            }
            _ => e.to_string(),
        },
    })
}

/// The sentences of the Austen novel `novel` (a file stem such as `emma` or
/// `northanger-abbey`) in the directory `dir` (`data/external/austen`), in text order.
///
/// # Errors
/// As [`read_text`] (the fetch command named is `cargo xtask fetch austen`).
pub fn austen_sentences(dir: &Path, novel: &str) -> Result<Vec<String>, TextError> {
    let text = read_text(&dir.join(format!("{novel}.txt")), "austen")?;
    Ok(sentences(&text))
}

/// Split `text` into sentences (see the module doc for the rules). Whitespace inside a
/// sentence is collapsed to single spaces; empty sentences are dropped.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for paragraph in text.split("\n\n") {
        let words: Vec<&str> = paragraph.split_whitespace().collect();
        if words.is_empty() || is_heading(&words) {
            continue;
        }
        let mut current: Vec<String> = Vec::new();
        for word in words {
            let word = word.replace('_', "");
            if word.is_empty() {
                continue;
            }
            let ends = ends_sentence(&word);
            current.push(word);
            if ends {
                out.push(current.join(" "));
                current.clear();
            }
        }
        if !current.is_empty() {
            out.push(current.join(" "));
        }
    }
    out
}

/// A paragraph that is a heading: every letter upper case (`CHAPTER XII`, `VOLUME I`, `EMMA`).
fn is_heading(words: &[&str]) -> bool {
    words.len() <= 4
        && words
            .iter()
            .flat_map(|w| w.chars())
            .all(|c| !c.is_alphabetic() || c.is_uppercase())
}

/// Whether `word` ends a sentence: its last character before closing quotes or brackets is
/// `.`, `!` or `?`, and it is not a title such as `Mr.`.
fn ends_sentence(word: &str) -> bool {
    let core = word.trim_end_matches(['"', '\'', ')', ']', '\u{201d}', '\u{2019}']);
    let Some(last) = core.chars().last() else {
        return false;
    };
    match last {
        '!' | '?' => true,
        '.' => {
            let stem = core.trim_end_matches('.');
            let stem = stem.trim_start_matches(['"', '\'', '(', '\u{201c}', '\u{2018}']);
            !TITLES.contains(&stem)
        }
        _ => false,
    }
}
