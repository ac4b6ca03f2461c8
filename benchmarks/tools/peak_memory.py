"""Peak memory that one epoch of ``MLP.fit`` adds over the loaded data (Linux, ru_maxrss).

    python -m benchmarks.tools.peak_memory 784,128,10 128        # layers, batch size

Uses Fashion-MNIST from /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist).
"""

import resource
import sys

from fastmlp import MLP
from fastmlp.data import load


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main(layers, batch_size):
    data = load("/usr/share/datasets/fashion-mnist")
    X, y = data.X_train, data.y_train
    model = MLP(list(layers))
    model.fit(X[:1024], y[:1024], epochs=1, batch_size=batch_size)    # compile or load the cache
    before = max(rss_mib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    model.fit(X, y, epochs=1, batch_size=batch_size)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"data {X.nbytes / 2**20:.0f} MiB; process before fit {before:.0f} MiB; peak during fit "
          f"{peak:.0f} MiB: fit added {max(0.0, peak - before):.1f} MiB; parameters "
          f"{model.n_params * X.itemsize / 2**20:.2f} MiB")


if __name__ == "__main__":
    main(tuple(int(v) for v in sys.argv[1].split(",")), int(sys.argv[2]))
