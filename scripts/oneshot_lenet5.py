"""One-shot methods on an image model: the bundled LeNet-5, calibrated layer by layer on 256
images of MNIST-5k's training split (seed 0), evaluated on its test split (1000 images), all
through the command line. Writes the JSON and prints the README table.

Run: python3 scripts/oneshot_lenet5.py [BINARY] [OUT.json]
(default target/release/burn-compress, benches/results/2026-12-01-oneshot/lenet5.json)
"""
import json, os, subprocess, sys, tempfile

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/burn-compress"
OUT = sys.argv[2] if len(sys.argv) > 2 else "benches/results/2026-12-01-oneshot/lenet5.json"
WEIGHTS, DATA = "data/lenet5-mnist5k.safetensors", "data/mnist5k.safetensors"
SAMPLES = 256

RUNS = [
    (f"{s}% unstructured, {label}", "prune", alg, f"sparsity = {s / 100}\n")
    for s in (50, 70, 80)
    for alg, label in (("magnitude", "magnitude"), ("wanda", "Wanda"), ("sparsegpt", "SparseGPT"))
] + [
    (f"2:4 on fc1-fc3 (the convolutions' 25 and 150 inputs do not split in 4), {label}",
     "prune", alg, 'mask_structure = "2:4"\nignore = ["conv1", "conv2"]\n')
    for alg, label in (("magnitude", "magnitude"), ("wanda", "Wanda"), ("sparsegpt", "SparseGPT"))
] + [
    (f"int{b} per channel, {label}", "quantize", alg,
     f'[algorithm.weights]\nnum_bits = {b}\nstrategy = "channel"\nsymmetric = true\n')
    for b in (4, 3, 2)
    for alg, label in (("rtn", "round-to-nearest"), ("gptq", "GPTQ"))
]


def cli(*args):
    out = subprocess.run([BIN, *args], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(args)}: {out.stderr}")
    return json.loads(out.stdout)


def top1(flag, path):
    m = cli("eval", "--arch", "lenet5", flag, path, "--data", DATA, "--json")["metrics"]
    return m["top1"]


def main():
    rows = [{"method": "dense f32", "top1": top1("--weights", WEIGHTS)}]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, command, alg, options) in enumerate(RUNS):
            config = os.path.join(tmp, f"{i}.toml")
            with open(config, "w") as f:
                f.write(options if options.startswith("[") else "[algorithm]\n" + options)
            saved = os.path.join(tmp, f"{i}.bpk")
            r = cli(command, "--arch", "lenet5", "--weights", WEIGHTS, "--algorithm", alg,
                    "--config", config, "--calib", DATA, "--calib-samples", str(SAMPLES),
                    "--save-model", saved, "--json")
            rows.append({
                "method": label, "algorithm": alg, "options": options,
                "top1": top1("--model", saved), "sparsity": r.get("sparsity"),
                "seconds": r["seconds"], "peak_bytes": r["engine"]["peak_bytes"],
            })
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"binary": BIN, "calibration_images": SAMPLES, "rows": rows}, f, indent=1)
    dense = rows[0]["top1"]
    print("| method | top-1 (1000 test images) | vs dense | compress time |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        t = f"{r['seconds']:.2f} s" if "seconds" in r else ""
        print(f"| {r['method']} | {r['top1']:.3f} | {r['top1'] - dense:+.3f} | {t} |")


main()
