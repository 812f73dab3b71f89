"""Check values for algorithms/sparsegpt (prune-sparsegpt): a NumPy port of IST-DASLab/sparsegpt's
`SparseGPT.fasterprune` (sparsegpt.py), in float64.

The port follows the reference line by line, with one deliberate difference that the Rust crate
shares: the unstructured block mask zeroes exactly int(numel * sparsity) entries (stable order,
ties to the lower flat index), where the reference's `tmp <= sort(tmp)[int(numel * sparsity)]`
also zeroes the entry at the quantile index. N:M ties go to the lower column (the reference's
`topk` leaves them unspecified). `keep` is NVIDIA's n (kept of every m); the reference's
`prunen` is m - keep.

Run: python3 scripts/reference/sparsegpt.py
"""
import numpy as np


def factor(H, percdamp):
    """Dead columns, damping, U = upper Cholesky of H^-1 (cholesky -> cholesky_inverse ->
    cholesky upper in the reference)."""
    H = H.copy()
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    damp = percdamp * np.mean(np.diag(H))
    H[np.diag_indices_from(H)] += damp
    U = np.linalg.cholesky(np.linalg.inv(H)).T
    return U, dead


def fasterprune(W, H, sparsity, keep=0, m=0, blocksize=128, percdamp=0.01):
    W = W.astype(np.float64).copy()
    rows, cols = W.shape
    Hinv, dead = factor(H, percdamp)
    W[:, dead] = 0
    prunen = m - keep if m else 0
    Losses = np.zeros(rows)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].copy()
        Q1 = np.zeros_like(W1)
        Err1 = np.zeros_like(W1)
        Losses1 = np.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        mask1 = np.zeros(W1.shape, dtype=bool)
        if prunen == 0:
            tmp = W1 ** 2 / (np.diag(Hinv1).reshape((1, -1))) ** 2
            k = int(tmp.size * sparsity)
            order = np.argsort(tmp.flatten(), kind="stable")
            mask1.flat[order[:k]] = True
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if prunen != 0 and i % m == 0:
                tmp = W1[:, i:(i + m)] ** 2 / (np.diag(Hinv1)[i:(i + m)].reshape((1, -1))) ** 2
                idx = np.argsort(tmp, axis=1, kind="stable")[:, :prunen]
                for r in range(rows):
                    mask1[r, i + idx[r]] = True
            q = w.copy()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            Losses1[:, i] = (w - q) ** 2 / d ** 2
            err1 = (w - q) / d
            W1[:, i:] -= np.outer(err1, Hinv1[i, i:])
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        Losses += np.sum(Losses1, 1) / 2
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return W, float(np.sum(Losses)), int(dead.sum())


def show(name, a):
    print(f"{name} = [{', '.join(repr(float(v)) for v in np.asarray(a).flatten())}]")


def main():
    rng = np.random.default_rng(0)

    # 1. One column step (the OBS update) on a 2 x 3 weight: column 0, row 0 pruned, row 1 kept.
    print("# column step")
    X = np.round(rng.normal(size=(6, 3)), 2)
    H = 2.0 / 6 * X.T @ X
    U, _ = factor(H, 0.01)
    W = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
    show("H", H)
    show("U", U)
    err = W[0, 0] / U[0, 0]
    W1 = W.copy()
    W1[0, :] -= err * U[0, :]
    W1[0, 0] = 0.0
    show("after", W1)
    print("err =", repr(float(err)))

    # 2. A whole fasterprune on 4 x 8, block 4: 50 % unstructured and 2:4.
    print("# fasterprune 4 x 8, block 4")
    X = np.round(rng.normal(size=(16, 8)), 2)
    X[:, 2] *= 3.0
    H = 2.0 / 16 * X.T @ X
    W = np.round(rng.normal(size=(4, 8)), 2)
    show("X", X)
    show("W", W)
    show("H", H)
    Wu, lu, _ = fasterprune(W, H, 0.5, blocksize=4)
    show("unstructured", Wu)
    print("unstructured_loss =", repr(lu))
    Wn, ln, _ = fasterprune(W, H, 0.0, keep=2, m=4, blocksize=4)
    show("two_of_four", Wn)
    print("two_of_four_loss =", repr(ln))

    # 3. A dead input (column 5 never fires), 50 % unstructured, block 4.
    print("# dead column")
    Xd = X.copy()
    Xd[:, 5] = 0.0
    Hd = 2.0 / 16 * Xd.T @ Xd
    Wd, ld, nd = fasterprune(W, Hd, 0.5, blocksize=4)
    show("dead", Wd)
    print("dead_loss =", repr(ld), "dead_columns =", nd)


if __name__ == "__main__":
    main()
