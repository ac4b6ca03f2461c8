"""Epoch time from a memory-mapped uint8 file against the same images in memory, paired.

    python -m benchmarks.tools.mapped_epoch                      # 784,128,10, batch 32, 5 rounds
    python -m benchmarks.tools.mapped_epoch --layers 784,512,256,10 --batch 128 --rounds 7
    python -m benchmarks.tools.mapped_epoch --mib 2048 --rounds 2    # a 2 GiB file (9 GiB RAM)
    python -m benchmarks.tools.mapped_epoch --mib 2048 --rounds 2 --shuffle-block 65536

Fashion-MNIST's 60,000 training images (/usr/share/datasets/fashion-mnist) three ways, one
epoch each per round, in a rotating order: "memory" the loader's float32 array; "uint8" the
uint8 pixels in memory as a MappedRows (converted a slice at a time, a quarter of the bytes
held); "file" the uint8 ``.npy`` file mapped read-only, in the page cache (read once before).
Prints each way's median epoch and its ratio to "memory" (median of the per-round ratios).
All three train bitwise the same weights (checked). ``--mib M``: the images repeated to an M MiB
file instead (benchmarks.tools.peak_memory.write_big_file), "memory" then holding them as
float32 (4 M MiB). ``--shuffle-block ROWS`` is passed to fit.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from fastmlp import MLP
from fastmlp.data import load
from fastmlp.mapped import MappedRows

from .peak_memory import write_big_file

FASHION = "/usr/share/datasets/fashion-mnist"


def main(layers, batch, rounds, threads, mib=None, shuffle_block=None):
    with tempfile.TemporaryDirectory() as folder:
        if mib is None:
            data = load(FASHION)
            X, y = data.X_train, data.y_train
            path = Path(folder) / "train.npy"
            np.save(path, np.rint(X * 255).astype(np.uint8))
        else:
            path, y = write_big_file(folder, mib)
        file = MappedRows.open(path)
        if mib is not None:
            X = file.take(np.arange(len(y)), np.float32)
        pixels = np.load(path)
        ways = {"memory": X, "uint8": MappedRows(pixels, pixels=True), "file": file}
        assert np.array_equal(file.take(np.arange(min(len(X), 100_000)), np.float32),
                              X[:100_000])
        seconds = {way: [] for way in ways}
        weights = {}
        for X_small in (X[:1024], file.subset(np.arange(1024))):     # compile / load the cache
            MLP(list(layers), threads=threads).fit(X_small, y[:1024], epochs=1, batch_size=batch)
        for r in range(1, rounds + 1):
            names = list(ways)
            for way in names[r % 3:] + names[:r % 3]:
                model = MLP(list(layers), seed=r, threads=threads)
                start = time.perf_counter()
                model.fit(ways[way], y, epochs=1, batch_size=batch, shuffle_block=shuffle_block)
                seconds[way].append(time.perf_counter() - start)
                weights[way] = model._flat.copy()
            assert all(np.array_equal(weights["memory"], w) for w in weights.values())
    base = np.array(seconds["memory"])
    print(f"{','.join(map(str, layers))} batch {batch}, threads {threads or 'all'}, shuffle_block "
          f"{shuffle_block}, {rounds} paired rounds, {len(y):,} Fashion-MNIST images:")
    for way, times in seconds.items():
        times = np.array(times)
        print(f"  {way:7s} median {np.median(times):.3f} s/epoch (min {times.min():.3f}, max "
              f"{times.max():.3f}); x{np.median(times / base):.2f} of memory")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", default="784,128,10")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--mib", type=int, default=None, help="a file of this many MiB")
    p.add_argument("--shuffle-block", type=int, default=None)
    args = p.parse_args()
    main(tuple(int(v) for v in args.layers.split(",")), args.batch, args.rounds, args.threads,
         args.mib, args.shuffle_block)
