"""What fit shows while it trains (a line per epoch, a progress bar) and how it stops on Ctrl-C."""

import signal
import threading


def format_logs(logs, n_samples=None, engine=None):
    """One line for an epoch's logs; an epoch that trained fewer than ``n_samples`` samples
    (stopped by Ctrl-C or a callback) is marked as partial, one that ran (in part) on another
    engine than the model's ``engine`` (the NumPy reference while the kernels compile) says so."""
    parts = [f"epoch {logs['epoch']}"]
    if n_samples is not None and logs.get("samples", n_samples) < n_samples:
        parts[0] += f" (partial: {logs['samples']:,} of {n_samples:,} samples)"
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if key in logs:
            parts.append(f"{key} {logs[key]:.4f}")
    parts.append(f"lr {logs['lr']:.4g}")
    parts.append(f"{logs['seconds']:.2f}s")
    if engine is not None and logs.get("engine", engine) != engine:
        parts.append(f"engine {logs['engine']} (the kernels were compiling)")
    return "  ".join(parts)


def echo(line):
    from tqdm import tqdm

    tqdm.write(line)


def progress_bar(n, epoch, verbose):
    if verbose != 1:
        return None
    from tqdm import tqdm

    return tqdm(total=n, desc=f"epoch {epoch + 1}", unit="sample", unit_scale=True, leave=False)


class StopOnCtrlC:
    """While active (main thread only), the first Ctrl-C sets ``requested`` instead of raising;
    a second Ctrl-C raises KeyboardInterrupt at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            if self._previous is not None:
                signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False
