//! Language-model recipes on real text: the facade's sentence splitter on its documented rules
//! and on the Austen novels (`data/external/austen`, `cargo xtask fetch austen`).
//!
//! The MiniLM recipe itself (heads and FFN pruned to half the MACs, distillation, int8) is the
//! release example `crates/burn-compress/examples/minilm.rs`: its distillation does not fit the
//! debug test profile's time budget.

use std::path::Path;

use burn_compress::text::{TextError, austen_sentences, sentences};

fn austen() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/external/austen")
}

#[test]
fn sentences_end_at_terminal_punctuation_but_not_after_titles_and_headings_are_dropped() {
    // Expected output from scripts/reference/austen_sentences.py (its last line).
    let text = "CHAPTER I\n\n\"Mr. Smith said _so_.\" Did he?  Yes! (Mrs. Jones agreed.)\nNo end";
    assert_eq!(
        sentences(text),
        [
            "\"Mr. Smith said so.\"",
            "Did he?",
            "Yes!",
            "(Mrs. Jones agreed.)",
            "No end"
        ]
    );
}

#[test]
fn austen_novels_split_into_the_reference_sentence_counts() {
    // From scripts/reference/austen_sentences.py over the same files.
    for (novel, count) in [
        ("emma", 7586),
        ("persuasion", 3747),
        ("northanger-abbey", 3617),
    ] {
        let s = austen_sentences(&austen(), novel).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.len(), count, "{novel}");
    }
    let emma = austen_sentences(&austen(), "emma").unwrap();
    assert_eq!(emma[0], "By Jane Austen");
    assert_eq!(
        emma[2],
        "She was the youngest of the two daughters of a most affectionate, indulgent father; \
         and had, in consequence of her sister's marriage, been mistress of his house from a \
         very early period."
    );
}

#[test]
fn a_missing_novel_is_an_error_naming_the_path_and_the_fetch_command() {
    let err = austen_sentences(&austen(), "sanditon").unwrap_err();
    assert!(matches!(err, TextError::Read { .. }));
    let path = austen().join("sanditon.txt");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot read '{}': no such file (run `cargo xtask fetch austen`)",
            path.display()
        )
    );
}
