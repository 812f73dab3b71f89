"""Markdown tables for README from the one-shot examples' JSON
(benches/results/2026-11-30-oneshot/{smollm2,minilm}.json)."""
import json, sys

LABELS = {
    "dense": "dense f32",
    "magnitude-50": "50% unstructured, magnitude",
    "wanda-50": "50% unstructured, Wanda",
    "sparsegpt-50": "50% unstructured, SparseGPT",
    "magnitude-2:4": "2:4, magnitude",
    "wanda-2:4": "2:4, Wanda",
    "sparsegpt-2:4": "2:4, SparseGPT",
    "rtn-int4": "int4 g{g} asym, round-to-nearest",
    "gptq-int4": "int4 g{g} asym, GPTQ",
    "awq-int4": "int4 g{g} asym, AWQ",
    "rtn-w8a8": "W8A8, round-to-nearest",
    "smoothquant-w8a8": "W8A8, SmoothQuant (alpha 0.5)",
    "wanda-70": "70% unstructured, Wanda",
    "wanda-70-owl": "70% unstructured, Wanda + OWL",
    "sparsegpt-70": "70% unstructured, SparseGPT",
    "sparsegpt-70-owl": "70% unstructured, SparseGPT + OWL",
}

def mib(b):
    return "" if b is None else f"{b / 2**20:.0f} MiB"

def smollm(path):
    d = json.load(open(path))
    print("| method | perplexity | vs dense | compress time | engine peak |")
    print("| --- | --- | --- | --- | --- |")
    for r in d["rows"]:
        label = LABELS[r["row"]].format(g=64)
        t = "" if r["algorithm"] == "" else f"{r['compress_seconds']:.0f} s"
        print(f"| {label} | {r['perplexity']:.2f} | x{r['perplexity_vs_dense']:.3f} | {t} | {mib(r['engine_peak_bytes'])} |")
    rss = max(r["process_peak_rss_mib"] or 0 for r in d["rows"])
    print(f"\nprocess peak RSS over the run: {rss:.0f} MiB")

def minilm(path):
    d = json.load(open(path))
    print("| method | held-out cosine to dense | eating food / bread | / riding a horse | / new movie | compress time |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in d["rows"]:
        label = LABELS[r["row"]].format(g=128)
        t = "" if r["algorithm"] == "" else f"{r['compress_seconds']:.0f} s"
        p = r["pairs"]
        print(f"| {label} | {r['heldout_mean_cosine']:.4f} | {p[0]:.4f} | {p[1]:.4f} | {p[2]:.4f} | {t} |")

if __name__ == "__main__":
    which, path = sys.argv[1], sys.argv[2]
    {"smollm2": smollm, "minilm": minilm}[which](path)
