"""The same epoch in PyTorch (eager, CPU) and scikit-learn's MLPClassifier, when installed, for
the benchmark report."""

import statistics
import time
import warnings

import numpy as np

from .engine.lowlevel.threads import thread_limits



def torch_version():
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def sklearn_version():
    try:
        import sklearn
    except ImportError:
        return None
    return sklearn.__version__


def torch_model(layers, flat=None, activation=None):
    """The same MLP in PyTorch (Linear + ``activation``, a torch module class, default ReLU;
    logits out); weights copied from fastmlp's flat buffer when given (fastmlp's W is (n_in,
    n_out), torch's weight is (n_out, n_in))."""
    import torch

    from .params import layer_views

    modules = []
    for l, (n_in, n_out) in enumerate(zip(layers[:-1], layers[1:])):
        modules.append(torch.nn.Linear(n_in, n_out))
        if l < len(layers) - 2:
            modules.append((activation or torch.nn.ReLU)())
    model = torch.nn.Sequential(*modules)
    if flat is not None:
        linears = [m for m in modules if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            for lin, (W, b) in zip(linears, layer_views(flat, layers)):
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T, dtype=np.float32)))
                lin.bias.copy_(torch.from_numpy(np.asarray(b, dtype=np.float32)))
    return model


class torch_threads:
    """Context manager: torch.set_num_threads(n), restored afterwards."""

    def __init__(self, n):
        self.n = int(n)

    def __enter__(self):
        import torch

        self.previous = torch.get_num_threads()
        torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.previous)
        return False


def torch_train(model, X, y, order, batch_size, optimizer, head="softmax"):
    """One eager epoch over ``order``: forward, loss, backward, step per minibatch. ``head``:
    "softmax" (cross-entropy on the logits) or "sigmoid" (half the squared error of the
    sigmoid outputs against one-hot targets, summed over outputs, as fastmlp's sigmoid head).
    Returns the mean training loss."""
    import torch

    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    idx = torch.from_numpy(np.asarray(order, dtype=np.int64))
    total = 0.0
    for s in range(0, len(idx), batch_size):
        rows = idx[s:s + batch_size]
        xb, yb = Xt[rows], yt[rows]
        optimizer.zero_grad(set_to_none=True)
        z = model(xb)
        if head == "softmax":
            loss = torch.nn.functional.cross_entropy(z, yb)
        else:
            onehot = torch.nn.functional.one_hot(yb, z.shape[1]).to(z.dtype)
            loss = 0.5 * ((torch.sigmoid(z) - onehot) ** 2).sum(1).mean()
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(rows)
    return total / max(len(idx), 1)


def torch_epoch_seconds(case, n=None, repeats=1):
    """Seconds for PyTorch to train ``case``'s model for one epoch (its first ``n`` samples):
    same starting weights, order, batch size, plain SGD rate and thread count. Returns
    (median seconds, mean loss of the last run)."""
    import torch

    order = case.order if n is None else case.order[:n]
    times, loss = [], float("nan")
    with torch_threads(case.threads):
        warm = order[:max(2 * case.batch_size, len(order) // 10)]
        for k in range(max(1, repeats) + 1):     # run 0 warms up (allocator, thread pool)
            model = torch_model(case.layers, case.start)
            opt = torch.optim.SGD(model.parameters(), lr=case.lr)
            start = time.perf_counter()
            loss = torch_train(model, case.X, case.y, order if k else warm, case.batch_size, opt)
            if k:
                times.append(time.perf_counter() - start)
    return statistics.median(times), loss


def sklearn_epoch_seconds(case, n=None, repeats=1):
    """Seconds for scikit-learn's MLPClassifier to run one epoch (``max_iter=1``, plain SGD,
    same rate and batch size, no L2) on ``case``'s first ``n`` samples, BLAS threads limited to
    ``case.threads``. Its own initialisation and input checks are included."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    rows = case.order if n is None else case.order[:n]
    X, y = case.X[rows], case.y[rows]
    times = []
    for _ in range(max(1, repeats)):
        clf = MLPClassifier(hidden_layer_sizes=case.layers[1:-1], activation="relu", solver="sgd",
                            learning_rate_init=case.lr, momentum=0.0, nesterovs_momentum=False,
                            alpha=0.0, batch_size=case.batch_size, max_iter=1, shuffle=True,
                            random_state=0)
        with warnings.catch_warnings(), thread_limits(1, case.threads):
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            clf.fit(X, y)
            times.append(time.perf_counter() - start)
    return statistics.median(times)
