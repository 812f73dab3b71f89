"""Reference for compress-speedup's RMS norm hidden-size pruning test
(`crates/speedup/tests/suite/transformer.rs`, `an_rms_norm_losing_a_channel_matches_numpy`).

A two-token embedding (4 dims) feeds an RMS norm (eps 1e-5, gamma below). Channel 2 is pruned:
the masked model zeroes embedding column 2 and gamma[2]; the sped-up model drops channel 2 and
must reproduce the masked model's kept outputs. Printed: the masked model's output rows, kept
channels only, and the sped-up norm's gamma and epsilon.
"""
import numpy as np

emb = np.array([[0.5, -1.0, 2.0, 0.25], [1.5, 0.75, -0.5, -2.0]], dtype=np.float64)
gamma = np.array([1.2, 0.8, 1.5, 0.6])
eps = 1e-5
keep = [0, 1, 3]

masked = emb.copy()
masked[:, 2] = 0.0
g = gamma.copy()
g[2] = 0.0
rms = np.sqrt((masked**2).mean(axis=1, keepdims=True) + eps)
y = masked / rms * g
print("masked output, kept channels:", np.round(y[:, keep], 6).tolist())

d, dk = 4, len(keep)
g2 = gamma[keep] * np.sqrt(d / dk)
eps2 = eps * d / dk
x2 = emb[:, keep]
y2 = x2 / np.sqrt((x2**2).mean(axis=1, keepdims=True) + eps2) * g2
assert np.allclose(y2, y[:, keep], atol=1e-12)
print("sped-up gamma:", np.round(g2, 6).tolist(), "eps:", eps2)
