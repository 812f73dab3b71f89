#!/usr/bin/env python3
"""Independent reference for all-MiniLM-L6-v2 (compress-zoo's `MiniLm`).

Written from the BERT paper / HF `BertModel` semantics and the shipped `vocab.txt`, with NumPy only:
- a WordPiece tokenizer in plain Python (BERT's basic tokenizer: clean text, CJK spacing,
  lowercase + strip accents, split on whitespace and punctuation; then greedy longest-match
  WordPiece with the `##` prefix; [CLS] ... [SEP]);
- a float64 forward of the encoder read from `model.safetensors` (header parsed by hand),
  mean pooling over the tokens, L2 normalisation.

Usage: python3 scripts/reference/minilm.py [MODEL_DIR]   (default data/external/minilm-l6)
Prints the token ids of the test sentences, the three cosines the acceptance names, and a few
embedding values; crates/zoo/tests/suite/minilm.rs copies them.
"""
import json
import math
import struct
import sys
import unicodedata

import numpy as np

MODEL_DIR = sys.argv[1] if len(sys.argv) > 1 else "data/external/minilm-l6"


# ---------------------------------------------------------------- tokenizer
def load_vocab(path):
    with open(path, encoding="utf-8") as f:
        return {line.rstrip("\n"): i for i, line in enumerate(f)}


def is_whitespace(c):
    if c in (" ", "\t", "\n", "\r"):
        return True
    return unicodedata.category(c) == "Zs"


def is_control(c):
    if c in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(c).startswith("C")


def is_punctuation(c):
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


def is_cjk(cp):
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def basic_tokenize(text):
    out = []
    for c in text:
        cp = ord(c)
        if cp == 0 or cp == 0xFFFD or is_control(c):
            continue
        if is_whitespace(c):
            out.append(" ")
        elif is_cjk(cp):
            out.append(f" {c} ")
        else:
            out.append(c)
    text = "".join(out).lower()
    text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    words = []
    for chunk in text.split():
        cur = ""
        for c in chunk:
            if is_punctuation(c):
                if cur:
                    words.append(cur)
                    cur = ""
                words.append(c)
            else:
                cur += c
        if cur:
            words.append(cur)
    return words


def wordpiece(word, vocab):
    if len(word) > 100:
        return [vocab["[UNK]"]]
    ids, start = [], 0
    while start < len(word):
        end, found = len(word), None
        while start < end:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                found = vocab[piece]
                break
            end -= 1
        if found is None:
            return [vocab["[UNK]"]]
        ids.append(found)
        start = end
    return ids


def tokenize(text, vocab):
    ids = [vocab["[CLS]"]]
    for w in basic_tokenize(text):
        ids.extend(wordpiece(w, vocab))
    ids.append(vocab["[SEP]"])
    return ids


# ---------------------------------------------------------------- weights
def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = {"F32": np.float32, "I64": np.int64}[info["dtype"]]
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=dtype).reshape(info["shape"]).astype(
            np.float64 if dtype == np.float32 else np.int64
        )
    return out


# ---------------------------------------------------------------- forward
_erf = np.vectorize(math.erf)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def linear(x, W, prefix):
    return x @ W[prefix + ".weight"].T + W[prefix + ".bias"]


def embed(ids, W, cfg):
    """Embedding of one sentence (no padding): float64 [hidden], L2-normalised."""
    eps = cfg["layer_norm_eps"]
    heads = cfg["num_attention_heads"]
    s = len(ids)
    h = (
        W["embeddings.word_embeddings.weight"][ids]
        + W["embeddings.position_embeddings.weight"][:s]
        + W["embeddings.token_type_embeddings.weight"][0]
    )
    h = layer_norm(h, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], eps)
    d = h.shape[1]
    hd = d // heads
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q = linear(h, W, p + "attention.self.query").reshape(s, heads, hd).transpose(1, 0, 2)
        k = linear(h, W, p + "attention.self.key").reshape(s, heads, hd).transpose(1, 0, 2)
        v = linear(h, W, p + "attention.self.value").reshape(s, heads, hd).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        scores = scores - scores.max(-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(1, 0, 2).reshape(s, d)
        a = linear(ctx, W, p + "attention.output.dense")
        h = layer_norm(
            a + h,
            W[p + "attention.output.LayerNorm.weight"],
            W[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        f = gelu(linear(h, W, p + "intermediate.dense"))
        f = linear(f, W, p + "output.dense")
        h = layer_norm(
            f + h, W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"], eps
        )
    e = h.mean(0)
    return e / np.linalg.norm(e)


def main():
    vocab = load_vocab(f"{MODEL_DIR}/vocab.txt")
    cfg = json.load(open(f"{MODEL_DIR}/config.json"))
    W = load_safetensors(f"{MODEL_DIR}/model.safetensors")

    print("# token ids")
    for text in [
        "A man is eating food.",
        "Elizabeth's unaffected résumé: naïvely written, isn't it?",
        "The quick-brown fox jumped over 1,234 lazy dogs!!",
    ]:
        print(repr(text), tokenize(text, vocab))

    base = "A man is eating food."
    others = [
        "A man is eating a piece of bread.",
        "A man is riding a horse.",
        "The new movie is awesome.",
    ]
    e0 = embed(tokenize(base, vocab), W, cfg)
    print("# cosines with", repr(base))
    for o in others:
        e = embed(tokenize(o, vocab), W, cfg)
        print(f"{o!r}: {float(e0 @ e):.6f}")
    print("# embedding of", repr(base), "first 8 values")
    print(", ".join(f"{x:.6f}" for x in e0[:8]))


if __name__ == "__main__":
    main()
