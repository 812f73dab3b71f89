"""Check values for algorithms/wanda (prune-wanda) and algorithms/magnitude (prune-magnitude): NumPy
ports of locuslab/wanda's `prune_wanda` and `prune_magnitude` (lib/prune.py) masks, with the
statistic of lib/layerwrapper.py (`scaler_row = sum_tokens x_j^2 / nsamples`).

Differences the Rust crates share: N:M ties go to the lower column (stable argsort; the
reference's `topk` leaves them unspecified), and the whole-layer magnitude threshold zeroes exactly
int(numel * sparsity) weights (the reference's `W_metric <= sort(W_metric)[k]` also zeroes the k-th).
`keep` is NVIDIA's n (kept of every m); the reference's `prune_n` is m - keep.

Run: python3 scripts/reference/wanda.py
"""
import numpy as np


def scaler_row(X, nsamples):
    return np.sum(X.astype(np.float64) ** 2, axis=0) / nsamples


def wanda_mask(W, scaler, sparsity, keep=0, m=0):
    metric = np.abs(W) * np.sqrt(scaler.reshape((1, -1)))
    mask = np.zeros(W.shape, dtype=bool)
    if m:
        for ii in range(0, W.shape[1], m):
            tmp = metric[:, ii:ii + m]
            idx = np.argsort(tmp, axis=1, kind="stable")[:, :m - keep]
            for r in range(W.shape[0]):
                mask[r, ii + idx[r]] = True
    else:
        order = np.argsort(metric, axis=-1, kind="stable")
        k = int(W.shape[1] * sparsity)
        for r in range(W.shape[0]):
            mask[r, order[r, :k]] = True
    return mask


def magnitude_mask(W, sparsity, keep=0, m=0):
    metric = np.abs(W)
    mask = np.zeros(W.shape, dtype=bool)
    if m:
        for ii in range(0, W.shape[1], m):
            idx = np.argsort(metric[:, ii:ii + m], axis=1, kind="stable")[:, :m - keep]
            for r in range(W.shape[0]):
                mask[r, ii + idx[r]] = True
    else:
        k = int(W.size * sparsity)
        mask.flat[np.argsort(metric.flatten(), kind="stable")[:k]] = True
    return mask


def show(name, mask):
    print(f"{name} =")
    for row in mask.astype(int):
        print("   ", "".join(str(v) for v in row))


def main():
    # Per-row versus per-layer: row 0 has large weights, row 1 small ones. Input 1 is loud.
    W = np.array([[4.0, 0.5, 3.0, 5.0], [0.2, 0.1, 0.4, 0.3]])
    X = np.array([[1.0, 4.0, 1.0, 1.0], [1.0, 4.0, -1.0, 1.0]])  # 1 sample of 2 tokens
    s = scaler_row(X, 1)
    print("scaler_row =", s.tolist())
    print("metric =", (np.abs(W) * np.sqrt(s)).tolist())
    show("wanda 50% (per row)", wanda_mask(W, s, 0.5))
    metric = np.abs(W) * np.sqrt(s)
    layer = np.zeros(W.shape, dtype=bool)
    layer.flat[np.argsort(metric.flatten(), kind="stable")[:4]] = True
    show("per-layer 50% on the same scores (what Wanda does not do)", layer)
    show("magnitude 50% (whole layer)", magnitude_mask(W, 0.5))

    # 2:4 on a 3 x 8 random case.
    rng = np.random.default_rng(1)
    W = np.round(rng.normal(size=(3, 8)), 2)
    X = np.round(rng.normal(size=(5, 8)), 2)
    s = scaler_row(X, 1)
    print("W =", W.flatten().tolist())
    print("sq_norm =", s.tolist())
    show("wanda 2:4", wanda_mask(W, s, 0, keep=2, m=4))
    show("wanda 1:4", wanda_mask(W, s, 0, keep=1, m=4))
    show("magnitude 2:4", magnitude_mask(W, 0, keep=2, m=4))
    show("wanda 25% (per row)", wanda_mask(W, s, 0.25))
    show("magnitude 25% (whole layer)", magnitude_mask(W, 0.25))


if __name__ == "__main__":
    main()
