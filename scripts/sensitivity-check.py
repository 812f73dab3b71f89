#!/usr/bin/env python3
"""Independent check of `burn-compress sensitivity` on the bundled LeNet-5 (issue 13).

Re-implements, with numpy and the `safetensors` package only (no Burn, no burn-compress code):
LeNet-5's forward (conv1 1->6 k5 pad 2, relu, maxpool 2, conv2 6->16 k5, relu, maxpool 2,
flatten, fc1 400->120, relu, fc2 120->84, relu, fc3 84->10), L1-norm output-channel pruning
(NNI's L1NormPruner: per output channel the sum of |w|; the floor(n * ratio) smallest channels
are zeroed, ties broken by the earlier channel; the bias entries of pruned channels are zeroed
too), and NNI's sensitivity analysis (one layer at a time, ratio a + (1 - a) * s where a is the
fraction of the layer's weight already zero; the model is restored before the next layer).

The metric is accuracy on the MNIST-5k test split (index % 5 == 4, pixels / 255). Every forward
runs twice, in float32 (what Burn computes in) and in float64; the table is the float32 one, and
any point where the two disagree is listed (a test image whose top logits are that close).

    python3 scripts/sensitivity-check.py [--out crates/cli/tests/fixtures/lenet5-l1-sensitivity.json]
        [--csv docs/lenet5-l1-sensitivity.csv]
"""
import argparse
import json
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from safetensors.numpy import load_file

LAYERS = ["conv1", "conv2", "fc1", "fc2", "fc3"]
SPARSITIES = [round(i * 0.1, 2) for i in range(1, 10)]


def conv2d(x, w, b, pad):
    """x [N, C, H, W], w [O, C, k, k] (PyTorch layout), stride 1."""
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k = w.shape[2]
    cols = sliding_window_view(x, (k, k), axis=(2, 3))  # [N, C, H', W', k, k]
    y = np.einsum("nchwij,ocij->nohw", cols, w, optimize=True)
    return y + b[None, :, None, None]


def maxpool2(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def relu(x):
    return np.maximum(x, 0)


def forward(p, x):
    x = maxpool2(relu(conv2d(x, p["conv1.weight"], p["conv1.bias"], 2)))
    x = maxpool2(relu(conv2d(x, p["conv2.weight"], p["conv2.bias"], 0)))
    x = x.reshape(x.shape[0], -1)  # channel-major flatten, as torch's and Burn's flatten(1, 3)
    x = relu(x @ p["fc1.weight"].T + p["fc1.bias"])
    x = relu(x @ p["fc2.weight"].T + p["fc2.bias"])
    return x @ p["fc3.weight"].T + p["fc3.bias"]


def accuracy(p, images, labels, dtype):
    q = {k: v.astype(dtype) for k, v in p.items()}
    logits = forward(q, images.astype(dtype))
    # argmax takes the first maximum, as Burn's does.
    return float((logits.argmax(axis=1) == labels).mean())


def l1_prune(p, layer, sparsity):
    """A copy of p with `layer`'s output channels pruned to a + (1 - a) * sparsity."""
    w = p[layer + ".weight"]
    already = float((w == 0).sum()) / w.size
    ratio = already + (1.0 - already) * sparsity
    out = w.shape[0]  # PyTorch layout: output channels first for conv and Linear alike
    metric = np.abs(w.astype(np.float64)).reshape(out, -1).sum(axis=1)
    k = math.floor(out * ratio)
    pruned = np.argsort(metric, kind="stable")[:k]
    q = dict(p)
    q[layer + ".weight"] = w.copy()
    q[layer + ".weight"][pruned] = 0
    q[layer + ".bias"] = p[layer + ".bias"].copy()
    q[layer + ".bias"][pruned] = 0
    return q, k


def key(s):
    """NNI's / burn-compress's key: one decimal where the sparsity has one, else two."""
    return f"{s:.1f}" if round(s, 1) == s else f"{s:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default="data/lenet5-mnist5k.safetensors")
    ap.add_argument("--data", default="data/mnist5k.safetensors")
    ap.add_argument("--out", default="crates/cli/tests/fixtures/lenet5-l1-sensitivity.json")
    ap.add_argument("--csv", default="docs/lenet5-l1-sensitivity.csv")
    args = ap.parse_args()

    params = load_file(args.weights)
    data = load_file(args.data)
    idx = np.arange(len(data["labels"]))
    test = idx % 5 == 4
    images = (data["images"][test].astype(np.float32) / np.float32(255.0))[:, None, :, :]
    labels = data["labels"][test].astype(np.int64)
    n = len(labels)

    baseline = accuracy(params, images, labels, np.float32)
    print(f"baseline accuracy {baseline} (float64: {accuracy(params, images, labels, np.float64)})")
    table = {}
    disagreements = []
    for layer in LAYERS:
        table[layer] = {}
        for s in SPARSITIES:
            q, k = l1_prune(params, layer, s)
            a32 = accuracy(q, images, labels, np.float32)
            a64 = accuracy(q, images, labels, np.float64)
            if a32 != a64:
                disagreements.append((layer, s, a32, a64))
            table[layer][key(s)] = a32
            print(f"{layer} s={s}: {k} of {q[layer + '.weight'].shape[0]} channels -> {a32}")
    print(f"{n} test images; float32 / float64 disagreements: {disagreements or 'none'}")

    fixture = {
        "metric": "accuracy",
        "baseline": baseline,
        "layers": table,
        "test_images": n,
        "generator": "scripts/sensitivity-check.py (numpy float32 forward, L1 output channels)",
    }
    with open(args.out, "w") as f:
        json.dump(fixture, f, indent=2)
        f.write("\n")
    with open(args.csv, "w") as f:
        f.write("layername," + ",".join(key(s) for s in SPARSITIES) + "\n")
        for layer in LAYERS:
            f.write(layer + "," + ",".join(repr(table[layer][key(s)]) for s in SPARSITIES) + "\n")
    print(f"wrote {args.out} and {args.csv}")


if __name__ == "__main__":
    main()
