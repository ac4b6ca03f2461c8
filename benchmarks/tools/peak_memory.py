"""Peak memory that one epoch of ``MLP.fit`` adds (Linux, VmHWM), from memory or from a file.

    python -m benchmarks.tools.peak_memory 784,128,10 128              # layers, batch size
    python -m benchmarks.tools.peak_memory 784,128,10 32 --mapped 2048  # a 2048 MiB uint8 file

The first form trains one epoch on Fashion-MNIST loaded in memory (float32) and reports what fit
adds over the loaded data. ``--mapped MIB`` writes Fashion-MNIST's training images, repeated to
MIB MiB, as a uint8 ``.npy`` file in a temporary directory, maps it (``np.load(mmap_mode="r")``
wrapped as pixels) and reports what one epoch from the file adds over the process before fit:
the file's rows (mapped pages included) count only while a slice of them is being read.
Uses Fashion-MNIST from /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist).
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from fastmlp import MLP
from fastmlp.data import load
from fastmlp.mapped import MappedRows

FASHION = "/usr/share/datasets/fashion-mnist"


def _status_mib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib():
    return _status_mib("VmRSS")


def reset_peak():
    """Start the peak (VmHWM) afresh from the current resident size (Linux 4.0+)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_mib():
    """The resident size's peak since :func:`reset_peak` (or since the process began)."""
    return _status_mib("VmHWM")


def write_big_file(folder, mib):
    """Fashion-MNIST's training images as uint8 rows, repeated to ``mib`` MiB, and their labels
    beside them: (images path, labels)."""
    data = load(FASHION)
    images = np.rint(data.X_train * 255).astype(np.uint8)
    n = mib * 2**20 // images.shape[1]
    path = Path(folder) / "big.npy"
    header = {"descr": "|u1", "fortran_order": False, "shape": (n, images.shape[1])}
    with open(path, "wb") as f:     # plain writes: the file's pages never count in this process
        np.lib.format.write_array_header_1_0(f, header)
        f.writelines(images[:min(n, start + len(images)) - start].tobytes()
                     for start in range(0, n, len(images)))
    return path, np.resize(data.y_train, n)


def main(layers, batch_size, mapped_mib=None):
    model = MLP(list(layers))
    if mapped_mib is None:
        data = load(FASHION)
        X, y = data.X_train, data.y_train
        model.fit(X[:1024], y[:1024], epochs=1, batch_size=batch_size)    # compile or load the cache
        reset_peak()
        before = rss_mib()
        model.fit(X, y, epochs=1, batch_size=batch_size)
        peak = peak_mib()
        print(f"data {X.nbytes / 2**20:.0f} MiB; process before fit {before:.0f} MiB; peak during "
              f"fit {peak:.0f} MiB: fit added {max(0.0, peak - before):.1f} MiB; parameters "
              f"{model.n_params * X.itemsize / 2**20:.2f} MiB")
        return
    with tempfile.TemporaryDirectory() as folder:
        path, y = write_big_file(folder, mapped_mib)
        X = MappedRows.open(path)
        model.fit(X.subset(np.arange(1024)), y[:1024], epochs=1, batch_size=batch_size)
        X.release()
        reset_peak()
        before = rss_mib()
        start = time.perf_counter()
        model.fit(X, y, epochs=1, batch_size=batch_size)
        seconds = time.perf_counter() - start
        peak = peak_mib()
        print(f"file {path.stat().st_size / 2**20:.0f} MiB uint8, {len(y):,} rows; process "
              f"before fit {before:.0f} MiB (labels {y.nbytes / 2**20:.0f} MiB); peak during fit "
              f"{peak:.0f} MiB: fit added {max(0.0, peak - before):.1f} MiB in {seconds:.1f} s; "
              f"parameters {model.n_params * 4 / 2**20:.2f} MiB")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("layers", help="widths, e.g. 784,128,10")
    p.add_argument("batch_size", type=int)
    p.add_argument("--mapped", type=int, metavar="MIB",
                   help="train from a uint8 file of this many MiB, memory-mapped")
    args = p.parse_args()
    main(tuple(int(v) for v in args.layers.split(",")), args.batch_size, args.mapped)
