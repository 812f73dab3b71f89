"""NumPy port of SmoothQuant's smoothing (mit-han-lab/smoothquant, smoothquant/smooth.py,
smooth_ln_fcs_llama_like) on the host block the quant-smoothquant tests build: an RMSNorm
(gamma) feeding two Linears.

  weight_scales = max over the Linears of max_i |W_ij|, clamped to 1e-5
  scales = clamp(act_max^alpha / weight_scales^(1 - alpha), 1e-5)
  gamma /= scales; W[:, j] *= scales[j]

Run: python3 scripts/reference/smoothquant.py  (prints the values pasted into
algorithms/smoothquant/src/tests.rs)
"""

import numpy as np

F = np.float32


def smooth_scales(act_max, weights, alpha):
    w_max = np.max([np.abs(w.astype(np.float64)).max(axis=0) for w in weights], axis=0)
    w_max = np.maximum(w_max, 1e-5)
    s = act_max.astype(np.float64) ** alpha / w_max ** (1 - alpha)
    return np.maximum(s, 1e-5).astype(F)


def rms(r, gamma):
    r64 = r.astype(np.float64)
    return r64 / np.sqrt((r64**2).mean(axis=1, keepdims=True) + 1e-6) * gamma.astype(np.float64)


def fmt(name, a):
    flat = ", ".join(repr(float(v)) for v in np.asarray(a).ravel())
    print(f"// {name} {list(np.shape(a))}\n[{flat}]")


def main():
    print("== by hand: act_max [4, 1, 0.25, 0], W1 [[1, -2, 0.5, 0]], W2 [[-3, 0.5, 0.25, 0]]")
    w1 = np.array([[1, -2, 0.5, 0]], F)
    w2 = np.array([[-3, 0.5, 0.25, 0]], F)
    a = np.array([4, 1, 0.25, 0], F)
    for alpha in (0.5, 0.8, 0.0, 1.0):
        fmt(f"alpha {alpha}", smooth_scales(a, [w1, w2], alpha))

    rng = np.random.default_rng(11)
    t, d = 10, 6
    chan = np.array([1, 20, 1, 0.5, 8, 1], F)
    r = (rng.standard_normal((t, d)) * chan).astype(F)
    gamma = (1 + 0.2 * rng.standard_normal(d)).astype(F)
    wq = (0.4 * rng.standard_normal((4, d))).astype(F)
    wv = (0.4 * rng.standard_normal((3, d))).astype(F)
    h = rms(r, gamma)
    act_max = np.abs(h).max(axis=0).astype(F)
    s = smooth_scales(act_max, [wq, wv], 0.5)
    print("\n== block (seed 11): r [10, 6], gamma, wq [4, 6], wv [3, 6]; alpha 0.5")
    fmt("r", r)
    fmt("gamma", gamma)
    fmt("wq", wq)
    fmt("wv", wv)
    fmt("act_max", act_max)
    fmt("scales", s)
    g2 = (gamma / s).astype(F)
    q2 = (wq * s[None, :]).astype(F)
    before = h @ wq.astype(np.float64).T
    after = rms(r, g2) @ q2.astype(np.float64).T
    print(f"max |after - before| = {np.abs(after - before).max():.3e}")
    fmt("smoothed act_max", np.abs(rms(r, g2)).max(axis=0))


if __name__ == "__main__":
    main()
