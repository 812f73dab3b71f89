#!/usr/bin/env python3
"""Independent NumPy forward of EfficientNet-Lite0 from the shipped legacy torch pickle.

Reference values for `crates/zoo/tests/suite/efficientnet.rs`. No torch: the `.pth` (PyTorch's
legacy, non-zip format) is read with `pickle` and NumPy only:

  pickle 1: magic number 0x1950a86a20f9469cfc6c
  pickle 2: protocol version 1001
  pickle 3: system info (little endian, type sizes)
  pickle 4: the state dict (an OrderedDict); tensors are `torch._utils._rebuild_tensor_v2`
            calls whose storages are persistent ids ('storage', FloatStorage, key, 'cpu', numel)
  pickle 5: the storage keys, in the order their data follows
  then, per storage: an 8-byte little-endian element count and the raw elements.

Tensors are views (this checkpoint's weights were converted from TensorFlow and keep TF's memory
order through their strides), so each is gathered with `as_strided` from its storage.

The model (EfficientNet-Lite0: MBConv without squeeze-excitation, ReLU6, BatchNorm eps 1e-3,
TensorFlow "same" padding, stem 32 and head 1280) is written from its definition, with the block
table read from the weight shapes. The input is a synthetic 224x224 RGB image (a formula the Rust
test computes the same way; there is no JPEG decoder in NumPy), normalised with mean 0.5 and std
0.5.

Usage: python3 scripts/reference/efficientnet_lite0.py [path/to/efficientnet-lite0-57934424.pth]
"""

import collections
import pickle
import sys

import numpy as np

PATH = "data/external/efficientnet-lite0/efficientnet-lite0-57934424.pth"
STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
EPS = 1e-3
DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64}


class StateDictUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, size, stride, *_: (storage, offset, size, stride)
        if module == "torch" and name in DTYPES:
            return name
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, numel)
        return pid


def load_state_dict(path):
    with open(path, "rb") as f:
        assert pickle.load(f) == 0x1950A86A20F9469CFC6C
        assert pickle.load(f) == 1001
        assert pickle.load(f)["little_endian"]
        views = StateDictUnpickler(f).load()
        keys = pickle.load(f)
        storages = {}
        for key in keys:
            (count,) = np.frombuffer(f.read(8), dtype="<i8")
            dtype = None
            for storage, *_ in views.values():
                if storage[2] == key:
                    dtype = DTYPES[storage[1]]
            storages[key] = np.frombuffer(f.read(int(count) * np.dtype(dtype).itemsize), dtype=dtype)
    state = {}
    for name, (storage, offset, size, stride) in views.items():
        data = storages[storage[2]]
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[offset:], shape=size, strides=[s * item for s in stride]
        )
        state[name] = np.array(view, dtype=np.float64 if data.dtype == np.float32 else data.dtype)
    return state


def same_pad(x, k, s):
    """TensorFlow "same": total padding so that out = ceil(in / s), the extra one at the end."""
    _, h, w = x.shape
    pads = []
    for size in (h, w):
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [(0, 0)] + pads)


def conv(x, weight, stride, groups=1):
    """x [C, H, W], weight [O, C / groups, k, k] (PyTorch layout), TF "same" padding."""
    out_c, _, k, _ = weight.shape
    x = same_pad(x, k, stride)
    c, h, w = x.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    if groups == 1:
        cols = np.empty((c, k, k, oh, ow))
        for i in range(k):
            for j in range(k):
                cols[:, i, j] = x[:, i : i + stride * oh : stride, j : j + stride * ow : stride]
        return np.tensordot(weight, cols, axes=([1, 2, 3], [0, 1, 2]))
    assert groups == c == out_c
    out = np.zeros((c, oh, ow))
    for i in range(k):
        for j in range(k):
            patch = x[:, i : i + stride * oh : stride, j : j + stride * ow : stride]
            out += weight[:, 0, i, j][:, None, None] * patch
    return out


def bn(x, state, prefix):
    g, b = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
    m, v = state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"]
    return ((x - m[:, None, None]) / np.sqrt(v[:, None, None] + EPS)) * g[:, None, None] + b[
        :, None, None
    ]


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def forward(state, image):
    """image [3, H, W] in [0, 1] -> logits [1000]."""
    x = (image - 0.5) / 0.5
    x = relu6(bn(conv(x, state["_conv_stem.weight"], 2), state, "_bn0"))
    for n, stride in enumerate(STRIDES):
        p = f"_blocks.{n}"
        inputs = x
        if f"{p}._expand_conv.weight" in state:
            x = relu6(bn(conv(x, state[f"{p}._expand_conv.weight"], 1), state, f"{p}._bn0"))
        dw = state[f"{p}._depthwise_conv.weight"]
        x = relu6(bn(conv(x, dw, stride, groups=dw.shape[0]), state, f"{p}._bn1"))
        x = bn(conv(x, state[f"{p}._project_conv.weight"], 1), state, f"{p}._bn2")
        if stride == 1 and x.shape == inputs.shape:
            x = x + inputs
    x = relu6(bn(conv(x, state["_conv_head.weight"], 1), state, "_bn1"))
    pooled = x.mean(axis=(1, 2))
    return state["_fc.weight"] @ pooled + state["_fc.bias"]


def synthetic_image(size=224):
    """The test image: pixel (c, y, x) = 0.5 + 0.5 sin(0.1 (c + 1) x + 0.07 y + c), in [0, 1]."""
    c = np.arange(3)[:, None, None]
    y = np.arange(size)[None, :, None]
    x = np.arange(size)[None, None, :]
    return 0.5 + 0.5 * np.sin(0.1 * (c + 1) * x + 0.07 * y + c)


def main():
    state = load_state_dict(sys.argv[1] if len(sys.argv) > 1 else PATH)
    for n in range(len(STRIDES)):
        p = f"_blocks.{n}"
        dw = state[f"{p}._depthwise_conv.weight"]
        proj = state[f"{p}._project_conv.weight"]
        print(f"block {n}: in {proj.shape[1] if f'{p}._expand_conv.weight' not in state else state[f'{p}._expand_conv.weight'].shape[1]}"
              f" hidden {dw.shape[0]} kernel {dw.shape[2]} out {proj.shape[0]} stride {STRIDES[n]}")
    params = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked")
                 and "running" not in k)
    print("parameters", params)
    logits = forward(state, synthetic_image())
    top = np.argsort(-logits)[:5]
    print("top-5 classes", top.tolist())
    print("top-5 logits", [float(f"{v:.6f}") for v in logits[top]])
    print("logits[0..4]", [float(f"{v:.6f}") for v in logits[:4]])


if __name__ == "__main__":
    main()
