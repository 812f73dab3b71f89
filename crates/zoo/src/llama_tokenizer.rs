//! The byte-level BPE tokenizer stored in a GGUF file's metadata (`tokenizer.ggml.*`), built
//! with Hugging Face's `tokenizers` crate.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use crate::gguf::GgufFile;
use crate::llama::LlamaError;

/// A GPT-2-style byte-level BPE tokenizer from `tokenizer.ggml.tokens` / `merges`, without a
/// prefix space. `tokenizer.ggml.pre` picks the pre-tokenizer as llama.cpp does: `smollm`
/// splits every digit on its own and then applies GPT-2's regex; `gpt2` (or `default`) applies
/// GPT-2's regex only. Tokens of type control (3) or user-defined (4) in
/// `tokenizer.ggml.token_type` are special: they match whole in the text and never merge.
#[derive(Debug, Clone)]
pub struct LlamaTokenizer {
    inner: Tokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    vocab: usize,
}

impl LlamaTokenizer {
    /// Build from a GGUF file's metadata.
    ///
    /// # Errors
    /// [`LlamaError::Gguf`] for a missing key, [`LlamaError::Tokenizer`] for a tokenizer model
    /// other than `gpt2`, a pre-tokenizer other than `smollm` / `gpt2` / `default`, or a malformed
    /// merge (naming it).
    pub fn from_gguf(f: &GgufFile) -> Result<Self, LlamaError> {
        let err = |message: String| LlamaError::Tokenizer { message };
        let model = f.get("tokenizer.ggml.model")?;
        if model.as_str() != Some("gpt2") {
            return Err(err(format!(
                "tokenizer.ggml.model is {model:?}; only byte-level BPE (\"gpt2\") is supported"
            )));
        }
        let digits = match f
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.as_str())
        {
            Some("smollm") => true,
            Some("gpt2") | Some("default") | None => false,
            Some(other) => {
                return Err(err(format!(
                    "tokenizer.ggml.pre '{other}' is not supported (supported: smollm, gpt2, default)"
                )));
            }
        };
        let tokens = f.get_strings("tokenizer.ggml.tokens")?;
        let merges = f
            .get_strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| {
                        err(format!(
                            "merge '{m}' is not two tokens separated by a space"
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| err(format!("building the BPE model: {e}")))?;
        let mut inner = Tokenizer::new(bpe);
        // ByteLevel(add_prefix_space = false, trim_offsets = true, use_regex = true).
        let byte_level = ByteLevel::new(false, true, true);
        let pre: PreTokenizerWrapper = if digits {
            Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into()
        } else {
            byte_level.into()
        };
        inner.with_pre_tokenizer(Some(pre));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        if let Ok(types) = f.get("tokenizer.ggml.token_type") {
            let special: Vec<AddedToken> = types
                .as_array()
                .unwrap_or_default()
                .iter()
                .zip(&tokens)
                .filter(|(ty, _)| matches!(ty.as_u64(), Some(3) | Some(4)))
                .map(|(_, t)| AddedToken::from(t.to_string(), true))
                .collect();
            inner.add_special_tokens(&special);
        }
        let id = |key: &str| -> Result<Option<u32>, LlamaError> {
            match f.metadata.contains_key(key) {
                true => Ok(Some(f.get_usize(key)? as u32)),
                false => Ok(None),
            }
        };
        Ok(Self {
            inner,
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            vocab: tokens.len(),
        })
    }

    /// Token ids of `text` (no BOS added; SmolLM2's GGUF says `add_bos_token = false`).
    ///
    /// # Errors
    /// [`LlamaError::Tokenizer`] when the tokenizer fails (a byte the vocabulary lacks).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LlamaError> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| LlamaError::Tokenizer {
                message: format!("encoding: {e}"),
            })
    }

    /// The text of `ids` (special tokens kept).
    ///
    /// # Errors
    /// [`LlamaError::Tokenizer`] for ids outside the vocabulary.
    pub fn decode(&self, ids: &[u32]) -> Result<String, LlamaError> {
        if let Some(id) = ids.iter().find(|&&i| i as usize >= self.vocab) {
            return Err(LlamaError::Tokenizer {
                message: format!("id {id} is outside the vocabulary of {}", self.vocab),
            });
        }
        self.inner
            .decode(ids, false)
            .map_err(|e| LlamaError::Tokenizer {
                message: format!("decoding: {e}"),
            })
    }

    /// `tokenizer.ggml.bos_token_id`.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// `tokenizer.ggml.eos_token_id`.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// The number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }
}
