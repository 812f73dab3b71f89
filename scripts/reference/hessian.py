"""Check values for compress_core::oneshot::hessian: the upper Cholesky factor of the damped
inverse Hessian, as sparsegpt.py / gptq.py compute it
(torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True))."""
import numpy as np

H = np.array([[4.0, 2.0, 0.6], [2.0, 5.0, 1.0], [0.6, 1.0, 3.0]])
damp = 0.01 * np.mean(np.diag(H))
Hd = H + damp * np.eye(3)
Hinv = np.linalg.inv(Hd)
U = np.linalg.cholesky(Hinv).T  # upper, Hinv = U^T U
print("damp", repr(damp))
for v in U.flatten():
    print(repr(float(v)))
assert np.allclose(U.T @ U, Hinv)
