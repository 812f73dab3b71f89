//! Text to token ids through the `tokenizers` crate: [`TextTokenizer`].

use std::path::{Path, PathBuf};

use crate::ZooError;

/// A HuggingFace tokenizer read from a model's `tokenizer.json`, with padding and truncation
/// turned off: one sentence gives exactly its own tokens (special tokens included), and
/// batching (with an attention mask) is the model's job.
///
/// The shipped all-MiniLM-L6-v2 `tokenizer.json` pads every sentence to 128 tokens; a model
/// that does not honour the padding mask then averages 120 `[PAD]` states into each embedding.
/// Turning padding off here removes that trap for every caller.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl TextTokenizer {
    /// Read `tokenizer.json` at `path`; padding and truncation are turned off.
    ///
    /// # Errors
    /// [`ZooError::Read`] naming the file when it is missing or not a tokenizer.
    pub fn from_file(path: &Path, fetch: &str) -> Result<Self, ZooError> {
        if !path.is_file() {
            return Err(ZooError::Read {
                path: path.to_path_buf(),
                message: format!("no such file (run `cargo xtask fetch {fetch}`)"),
            });
        }
        let mut inner = tokenizers::Tokenizer::from_file(path).map_err(|e| ZooError::Read {
            path: path.to_path_buf(),
            message: format!("not a tokenizer.json: {e}"),
        })?;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| ZooError::Read {
            path: path.to_path_buf(),
            message: format!("cannot turn truncation off: {e}"),
        })?;
        Ok(Self {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// The token ids of `text`, with the tokenizer's special tokens (`[CLS]` ... `[SEP]` for
    /// BERT).
    ///
    /// # Errors
    /// [`ZooError::Read`] naming the tokenizer file when the tokenizer fails on `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ZooError> {
        let encoding = self.inner.encode(text, true).map_err(|e| ZooError::Read {
            path: self.path.clone(),
            message: format!("cannot tokenize {text:?}: {e}"),
        })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The number of tokens in the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The `tokenizer.json` this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
