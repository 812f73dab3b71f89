"""Reference values for `burn_compress::eval::classification` (crates/cli/tests/suite/eval.rs).

Three items, six classes; the model's and a reference model's logits are fixed below. Prints
top-1 / top-5 accuracy, top-1 agreement, each item's KL(reference || model) of the softmax and
their mean, computed independently with NumPy (float64).
"""
import numpy as np

model = np.array(
    [
        [2.0, 1.0, 0.5, -1.0, 0.0, 3.0],
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        [5.0, -2.0, 1.0, 1.0, 0.0, -1.0],
    ],
    dtype=np.float32,
).astype(np.float64)
reference = np.array(
    [
        [1.5, 1.0, 0.5, -1.0, 0.0, 2.0],
        [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
        [4.0, -1.0, 1.0, 2.0, 0.0, -1.0],
    ],
    dtype=np.float32,
).astype(np.float64)
labels = np.array([5, 0, 3])


def log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


top1 = model.argmax(axis=1)
top5 = np.argsort(-model, axis=1, kind="stable")[:, :5]
lp, lq = log_softmax(reference), log_softmax(model)
kl = (np.exp(lp) * (lp - lq)).sum(axis=1)
print("top1", (top1 == labels).mean())
print("top5", np.mean([labels[i] in top5[i] for i in range(3)]))
print("agreement", (reference.argmax(axis=1) == top1).mean())
print("kl", [float(v) for v in kl])
print("mean_kl", float(kl.mean()))
