"""NumPy port of llm-awq's scale and clip search (awq/quantize/auto_scale.py, auto_clip.py) on the
tiny host block the quant-awq tests build, with GPTQ's quantizer (quant.py, as
compress_quant::rtn implements it) as the grid.

The block: h = rmsnorm(r) * gamma; q = h Wq^T; v = h Wv^T; o = v Wo^T. Scope "attn" is the
concatenation [q | o] (o computed from v), scope "o" is o from v. Mappings:
  input_layernorm -> [q_proj, v_proj], inspect "attn";  v_proj -> [o_proj], inspect "o".

Run: python3 scripts/reference/awq.py   (prints the values pasted into algorithms/awq/src/tests.rs)
"""

import numpy as np

F = np.float32


def fit(x, bits, sym):
    """GPTQ quant.py find_params on one group (float32)."""
    maxq = F(2**bits - 1)
    xmin = min(F(x.min()), F(0))
    xmax = max(F(x.max()), F(0))
    if sym:
        xmax = max(abs(xmin), xmax)
        if xmin < 0:
            xmin = -xmax
    if xmin == 0 and xmax == 0:
        xmin, xmax = F(-1), F(1)
    scale = F((xmax - xmin) / maxq)
    zero = F((maxq + 1) / 2) if sym else F(np.round(-xmin / scale))
    return scale, zero, maxq


def qgroup(x, bits, sym):
    s, z, m = fit(x, bits, sym)
    q = np.clip(np.round(x / s) + z, 0, m)
    return (s * (q - z)).astype(F)


def rtn(w, bits, sym, group):
    out = w.copy()
    for r in range(w.shape[0]):
        for g in range(0, w.shape[1], group):
            out[r, g:g + group] = qgroup(w[r, g:g + group], bits, sym)
    return out


def grid_scales(s_x, alpha, w_mean=None):
    s_x = s_x.astype(np.float64)
    if w_mean is None:
        s = s_x ** alpha
    else:
        s = s_x ** alpha / (w_mean ** (1 - alpha) + 1e-4)
    s = np.maximum(s, 1e-4)
    return (s / np.sqrt(s.max() * s.min())).astype(F)


def rms(r, gamma):
    r64 = r.astype(np.float64)
    return (r64 / np.sqrt((r64**2).mean(axis=1, keepdims=True) + 1e-6) * gamma).astype(F)


def fmt(name, a):
    flat = ", ".join(repr(float(v)) for v in np.asarray(a).ravel())
    print(f"// {name} {list(np.shape(a))}\n[{flat}]")


def scale_search(block_out, weights, s_x, n_grid, bits, sym, group):
    """_search_module_scale: losses per ratio, best ratio and scales."""
    org = block_out({})
    losses = []
    best = (None, np.inf, None)
    for k in range(n_grid):
        a = k / n_grid
        s = grid_scales(s_x, a)
        over = {n: (rtn(w * s[None, :], bits, sym, group) / s[None, :]).astype(F) for n, w in weights.items()}
        loss = float(((org.astype(np.float64) - block_out(over)) ** 2).mean())
        losses.append(loss)
        if loss < best[1]:
            best = (a, loss, s)
    return losses, best


def clip_layer(w, x, bits, sym, group, n_grid=20, max_shrink=0.5):
    """auto_clip_layer, one row group at a time."""
    out_max = np.zeros((w.shape[0], w.shape[1] // group), F)
    for r in range(w.shape[0]):
        for g in range(w.shape[1] // group):
            wg = w[r, g * group:(g + 1) * group]
            xg = x[:, g * group:(g + 1) * group].astype(np.float64)
            org = xg @ wg.astype(np.float64)
            m0 = F(np.abs(wg).max())
            best, min_err = m0, 1e9
            for i in range(int(max_shrink * n_grid)):
                mv = F(m0 * F(1 - i / n_grid))
                q = qgroup(np.clip(wg, -mv, mv), bits, sym)
                err = ((xg @ q.astype(np.float64) - org) ** 2).mean()
                if err < min_err:
                    min_err, best = err, mv
            out_max[r, g] = best
    return out_max


def main():
    np.set_printoptions(precision=9)
    print("== grid_scales: s_x [0.5, 2, 8, 0], alpha 0.5 and 0.25; duo alpha 0.5 with w_mean [0.5, 0.25, 1, 0.75]")
    s_x = np.array([0.5, 2.0, 8.0, 0.0])
    fmt("alpha 0.5", grid_scales(s_x, 0.5))
    fmt("alpha 0.25", grid_scales(s_x, 0.25))
    fmt("duo alpha 0.5", grid_scales(s_x, 0.5, np.array([0.5, 0.25, 1.0, 0.75])))

    rng = np.random.default_rng(7)
    t, d = 32, 8
    chan = np.array([1, 1, 12, 1, 0.5, 1, 6, 1], F)
    r = (rng.standard_normal((t, d)) * chan).astype(F)
    gamma = (1 + 0.3 * rng.standard_normal(d)).astype(F)
    wq = (0.5 * rng.standard_normal((4, d))).astype(F)
    wv = (0.5 * rng.standard_normal((8, d))).astype(F)
    wo = (0.5 * rng.standard_normal((6, 8))).astype(F)
    bits, sym, group = 3, False, 4
    print("\n== block inputs (seed 7)")
    fmt("r", r)
    fmt("gamma", gamma)
    fmt("wq", wq)
    fmt("wv", wv)
    fmt("wo", wo)

    h = rms(r, gamma)

    def attn(over):
        q = h.astype(np.float64) @ over.get("q", wq).astype(np.float64).T
        v = (h.astype(np.float64) @ over.get("v", wv).astype(np.float64).T).astype(F)
        o = v.astype(np.float64) @ wo.astype(np.float64).T
        return np.concatenate([q, o], axis=1)

    s_x = np.abs(h.astype(np.float64)).mean(axis=0)
    losses, (a, loss, s) = scale_search(attn, {"q": wq, "v": wv}, s_x, 20, bits, sym, group)
    print("\n== scale search, input_layernorm -> q, v (3-bit asym, group 4, n_grid 20)")
    fmt("losses", losses)
    srt = sorted(losses)
    print(f"best alpha {a}, loss {loss!r}, runner-up gap {(srt[1] - srt[0]) / srt[0]:.3e}")
    fmt("scales", s)

    print("\n== clip search: w [2, 8], x [12, 8], 3-bit asym; group 4 (Gram path) and 8 (direct path)")
    w = (rng.standard_normal((2, 8))).astype(F)
    w[0, 1] = F(4.0)  # an outlier the clip may cut
    w[1, 6] = F(-3.5)
    x = (rng.standard_normal((12, 8))).astype(F)
    x[:, 1] *= F(0.05)  # the outliers' inputs are small: clipping them costs little
    x[:, 6] *= F(0.05)
    fmt("w", w)
    fmt("x", x)
    fmt("max_val group 4", clip_layer(w, x, bits, sym, 4))
    fmt("max_val group 8", clip_layer(w, x[:6], bits, sym, 8))
    fmt("org max group 4", np.abs(w.reshape(2, 2, 4)).max(axis=2))


if __name__ == "__main__":
    main()
