"""Check values for compress_quant::rtn and algorithms/gptq (quant-gptq): a NumPy port of
IST-DASLab/gptq's quant.py (Quantizer.find_params / quantize, weight=True) and gptq.py
(GPTQ.fasterquant), line by line, in float32 as the reference runs.

One deliberate difference: the inverse-Hessian factor U is computed in float64 (as
compress_core::oneshot::hessian::prepare does) and cast to float32 for the column loop; the
reference does the Cholesky steps in float32.

Run: python3 scripts/reference/gptq.py  (prints the values the Rust tests copy).
"""
import numpy as np

f32 = np.float32


def quantize(x, scale, zero, maxq):
    q = np.clip(np.round(x / scale) + zero, 0, maxq)
    return (scale * (q - zero)).astype(f32)


class Quantizer:
    def __init__(self, bits, perchannel=True, sym=True, mse=False, norm=2.4, grid=100, maxshrink=0.8):
        self.maxq = f32(2**bits - 1)
        self.perchannel, self.sym, self.mse = perchannel, sym, mse
        self.norm, self.grid, self.maxshrink = f32(norm), grid, f32(maxshrink)

    def find_params(self, x):
        """find_params(x, weight=True) for a 2-D x."""
        shape = x.shape
        x = x.reshape(shape[0], -1) if self.perchannel else x.reshape(1, -1)
        tmp = np.zeros(x.shape[0], dtype=f32)
        xmin = np.minimum(x.min(1), tmp)
        xmax = np.maximum(x.max(1), tmp)
        if self.sym:
            xmax = np.maximum(np.abs(xmin), xmax)
            t = xmin < 0
            xmin[t] = -xmax[t]
        t = (xmin == 0) & (xmax == 0)
        xmin[t] = -1
        xmax[t] = +1
        self.scale = ((xmax - xmin) / self.maxq).astype(f32)
        if self.sym:
            self.zero = np.full_like(self.scale, (self.maxq + 1) / 2)
        else:
            self.zero = np.round(-xmin / self.scale).astype(f32)
        if self.mse:
            best = np.full([x.shape[0]], np.inf, dtype=f32)
            for i in range(int(self.maxshrink * self.grid)):
                p = f32(1 - i / self.grid)
                xmin1, xmax1 = p * xmin, p * xmax
                scale1 = ((xmax1 - xmin1) / self.maxq).astype(f32)
                zero1 = np.round(-xmin1 / scale1).astype(f32) if not self.sym else self.zero
                q = quantize(x, scale1[:, None], zero1[:, None], self.maxq)
                err = np.sum(np.abs(q - x) ** self.norm, 1, dtype=f32)
                t = err < best
                best[t] = err[t]
                self.scale[t] = scale1[t]
                self.zero[t] = zero1[t]
        if not self.perchannel:
            self.scale = np.repeat(self.scale, shape[0])
            self.zero = np.repeat(self.zero, shape[0])
        self.scale = self.scale.reshape(-1, 1)
        self.zero = self.zero.reshape(-1, 1)

    def quantize(self, x):
        return quantize(x, self.scale, self.zero, self.maxq)


def inverse_factor(H, percdamp):
    H = H.astype(np.float64).copy()
    damp = percdamp * np.mean(np.diag(H))
    H[np.diag_indices_from(H)] += damp
    return np.linalg.cholesky(np.linalg.inv(H)).T.astype(f32)


def fasterquant(W, H, quantizer, blocksize=128, percdamp=0.01, groupsize=-1, actorder=False,
                static_groups=False):
    W = W.astype(f32).copy()
    H = H.astype(np.float64).copy()
    columns = W.shape[1]
    quantizer.find_params(W)
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    if static_groups:
        import copy
        groups = []
        for i in range(0, columns, groupsize):
            q = copy.deepcopy(quantizer)
            q.find_params(W[:, i:(i + groupsize)])
            groups.append(q)
    if actorder:
        perm = np.argsort(-np.diag(H), kind="stable")
        W = W[:, perm]
        H = H[perm][:, perm]
        invperm = np.argsort(perm)
    Losses = np.zeros_like(W)
    Q = np.zeros_like(W)
    Hinv = inverse_factor(H, percdamp)
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].copy()
        Q1 = np.zeros_like(W1)
        Err1 = np.zeros_like(W1)
        Losses1 = np.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if groupsize != -1:
                if not static_groups:
                    if (i1 + i) % groupsize == 0:
                        quantizer.find_params(W[:, (i1 + i):(i1 + i + groupsize)])
                else:
                    idx = i1 + i
                    if actorder:
                        idx = perm[idx]
                    quantizer = groups[idx // groupsize]
            q = quantizer.quantize(w[:, None]).flatten()
            Q1[:, i] = q
            Losses1[:, i] = (w - q) ** 2 / d**2
            err1 = (w - q) / d
            W1[:, i:] -= np.outer(err1, Hinv1[i, i:]).astype(f32)
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        Losses[:, i1:i2] = Losses1 / 2
        W[:, i2:] -= (Err1 @ Hinv[i1:i2, i2:]).astype(f32)
    if actorder:
        Q = Q[:, invperm]
    return Q, float(np.sum(Losses, dtype=np.float64))


def show(name, a):
    a = np.asarray(a, dtype=f32).flatten()
    print(f"{name} = [" + ", ".join(repr(float(v)) for v in a) + "]")


# 1. The quantizer on one row.
row = np.array([[-0.8, -0.1, 0.05, 0.3, 0.55, 1.2, 0.0, -0.35]], dtype=f32)
for sym in (True, False):
    for mse in (False, True):
        q = Quantizer(4, sym=sym, mse=mse)
        q.find_params(row)
        tag = f"row sym={sym} mse={mse}"
        print(tag, "scale", repr(float(q.scale[0, 0])), "zero", repr(float(q.zero[0, 0])))
        show(tag + " q", q.quantize(row))

# 2. A 4 x 8 layer with its Hessian from 6 tokens of 2 sequences (H = 2/2 sum x x^T); input 5
#    never fires (a dead column).
rng = np.random.default_rng(16)
W = (np.round(rng.normal(size=(4, 8)) * 64) / 64).astype(f32)
X = rng.integers(-3, 4, size=(6, 8)).astype(np.float64)
X[:, 5] = 0
H = (2 / 2) * X.T @ X
show("W", W)
print("H = [" + ", ".join(repr(float(v)) for v in H.flatten()) + "]")
for label, kw in [
    ("channel asym block4", dict(groupsize=-1, blocksize=4)),
    ("group4 sym block4", dict(groupsize=4, blocksize=4)),
    ("group4 sym block4 actorder", dict(groupsize=4, blocksize=4, actorder=True)),
    ("group4 sym block4 actorder static", dict(groupsize=4, blocksize=4, actorder=True, static_groups=True)),
    ("group4 sym block4 static", dict(groupsize=4, blocksize=4, static_groups=True)),
    ("group2 sym block4", dict(groupsize=2, blocksize=4)),
    ("tensor sym block3", dict(groupsize=-1, blocksize=3)),
]:
    sym = "asym" not in label
    quantizer = Quantizer(4, perchannel="tensor" not in label, sym=sym)
    Q, loss = fasterquant(W, H, quantizer, **kw)
    show(label + " Q", Q)
    print(label, "loss", repr(loss))

# 3. Round-to-nearest of W per group of 4, symmetric 4-bit and asymmetric 3-bit.
for bits, sym in ((4, True), (3, False)):
    q = Quantizer(bits, sym=sym)
    out = np.concatenate([(q.find_params(W[:, g:g + 4]), q.quantize(W[:, g:g + 4]))[1]
                          for g in (0, 4)], axis=1)
    show(f"rtn group4 bits={bits} sym={sym}", out)
