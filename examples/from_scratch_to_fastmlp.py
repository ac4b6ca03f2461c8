"""From a from-scratch NumPy network to fastmlp, one function at a time.

The classic "neural network from scratch" notebook trains a 784-10-10 network on MNIST with
hand-written ``init_params`` / ``forward_prop`` / ``back_prop`` / ``update_params``, in a
column-major layout: X is (784, m), one sample per COLUMN, W1 is (10, 784), b1 is (10, 1).
fastmlp is row-major: X is (m, n_in), one sample per ROW, W is (n_in, n_out), b is (n_out,).
So the two layouts are transposes of each other:

    notebook            fastmlp
    X     (n_in, m)     X.T     (m, n_in)
    W1    (10, n_in)    W1.T    (n_in, 10)
    b1    (10, 1)       b1.ravel()  (10,)
    A2    (10, m)       A2.T    (m, 10)     softmax probabilities

This script runs the notebook on the 8x8 digits bundled with scikit-learn (64 inputs instead
of 784, so it takes seconds), then swaps each function for its fastmlp call and checks that
the numbers agree, then lets fastmlp run whole epochs. Run it with: python examples/from_scratch_to_fastmlp.py
"""

import time

import numpy as np

from fastmlp import functional as F
from fastmlp.data import load

ITERATIONS = 300
ALPHA = 0.5            # the notebook's learning rate ("alpha")


# ------------------------------------------------------------------ the notebook, as written
# (with one fix: the original's db = 1/m * np.sum(dZ) sums over units too; here it is per unit)

def init_params(n_in, rng):
    W1 = rng.random((10, n_in)) - 0.5
    b1 = rng.random((10, 1)) - 0.5
    W2 = rng.random((10, 10)) - 0.5
    b2 = rng.random((10, 1)) - 0.5
    return W1, b1, W2, b2


def ReLU(Z):
    return np.maximum(Z, 0)


def softmax(Z):
    E = np.exp(Z - Z.max(axis=0))
    return E / E.sum(axis=0)


def forward_prop(W1, b1, W2, b2, X):
    Z1 = W1.dot(X) + b1
    A1 = ReLU(Z1)
    Z2 = W2.dot(A1) + b2
    A2 = softmax(Z2)
    return Z1, A1, Z2, A2


def ReLU_deriv(Z):
    return Z > 0


def one_hot(Y):
    one_hot_Y = np.zeros((Y.size, Y.max() + 1))
    one_hot_Y[np.arange(Y.size), Y] = 1
    return one_hot_Y.T


def back_prop(Z1, A1, Z2, A2, W1, W2, X, Y):
    m = Y.size
    dZ2 = A2 - one_hot(Y)
    dW2 = 1 / m * dZ2.dot(A1.T)
    db2 = 1 / m * np.sum(dZ2, axis=1, keepdims=True)
    dZ1 = W2.T.dot(dZ2) * ReLU_deriv(Z1)
    dW1 = 1 / m * dZ1.dot(X.T)
    db1 = 1 / m * np.sum(dZ1, axis=1, keepdims=True)
    return dW1, db1, dW2, db2


def update_params(W1, b1, W2, b2, dW1, db1, dW2, db2, alpha):
    W1 = W1 - alpha * dW1
    b1 = b1 - alpha * db1
    W2 = W2 - alpha * dW2
    b2 = b2 - alpha * db2
    return W1, b1, W2, b2


def get_predictions(A2):
    return np.argmax(A2, 0)


def get_accuracy(predictions, Y):
    return np.mean(predictions == Y)


def gradient_descent(X, Y, alpha, iterations, params):
    W1, b1, W2, b2 = params
    for i in range(iterations):
        Z1, A1, Z2, A2 = forward_prop(W1, b1, W2, b2, X)
        dW1, db1, dW2, db2 = back_prop(Z1, A1, Z2, A2, W1, W2, X, Y)
        W1, b1, W2, b2 = update_params(W1, b1, W2, b2, dW1, db1, dW2, db2, alpha)
        if i % 100 == 0:
            print(f"  iteration {i:3d}: accuracy {get_accuracy(get_predictions(A2), Y):.3f}")
    return W1, b1, W2, b2


# ------------------------------------------------------------------ the same loop on fastmlp

def to_fastmlp(W1, b1, W2, b2):
    """Notebook layout -> fastmlp's: transpose each W, flatten each b (copies, C-contiguous)."""
    return [(np.ascontiguousarray(W1.T), b1.ravel().copy()),
            (np.ascontiguousarray(W2.T), b2.ravel().copy())]


def to_notebook(params):
    """fastmlp layout -> the notebook's (the inverse of to_fastmlp)."""
    (W1, b1), (W2, b2) = params
    return W1.T.copy(), b1.reshape(-1, 1).copy(), W2.T.copy(), b2.reshape(-1, 1).copy()


def gradient_descent_fastmlp(X_rows, Y, alpha, iterations, params):
    """gradient_descent with each hand-written function swapped for its fastmlp call."""
    for i in range(iterations):
        fwd = F.forward(params, X_rows, activation="relu", output="softmax")   # forward_prop
        grads = F.backward(params, fwd, Y, activation="relu", output="softmax")  # back_prop
        F.step(params, grads, alpha)                                          # update_params
        if i % 100 == 0:
            print(f"  iteration {i:3d}: accuracy {np.mean(fwd.output.argmax(axis=1) == Y):.3f}")
    return params


def main():
    data = load("digits")                       # 8x8 digits scaled to [0, 1], 80/20 split
    X_rows = data.X_train.astype(np.float64)    # (m, 64): fastmlp's layout, one sample per row
    Y = data.y_train
    X = X_rows.T                                # (64, m): the notebook's layout
    X_test = data.X_test.astype(np.float64)
    print(f"digits: {X_rows.shape[0]} training images of {X_rows.shape[1]} pixels")

    start = init_params(X.shape[0], np.random.default_rng(0))

    # 1. one step, function by function: the same numbers in the other layout
    W1, b1, W2, b2 = start
    Z1, A1, Z2, A2 = forward_prop(W1, b1, W2, b2, X)
    dW1, db1, dW2, db2 = back_prop(Z1, A1, Z2, A2, W1, W2, X, Y)
    params = to_fastmlp(*start)
    fwd = F.forward(params, X_rows)
    assert np.allclose(fwd.output, A2.T)                  # probabilities, transposed
    assert np.allclose(fwd.activations[1], A1.T)          # hidden layer, transposed
    grads = F.backward(params, fwd, Y)
    assert np.allclose(grads[0][0], dW1.T) and np.allclose(grads[0][1], db1.ravel())
    assert np.allclose(grads[1][0], dW2.T) and np.allclose(grads[1][1], db2.ravel())
    loss, same = F.loss_and_grad(params, X_rows, Y)       # forward + backward in one call
    assert all(np.allclose(a, b) for pa, pb in zip(same, grads) for a, b in zip(pa, pb))
    print(f"step 1 agrees with the notebook: loss {loss:.4f}, dW1 is dW1.T, db1 is db1.ravel()")

    # 2. the notebook's loop, then the same loop on fastmlp's kernels
    print(f"notebook gradient descent, {ITERATIONS} iterations:")
    t = time.perf_counter()
    nb = gradient_descent(X, Y, ALPHA, ITERATIONS, start)
    t_nb = time.perf_counter() - t
    print("the same loop on fastmlp's kernels:")
    t = time.perf_counter()
    fm = gradient_descent_fastmlp(X_rows, Y, ALPHA, ITERATIONS, to_fastmlp(*start))
    t_fm = time.perf_counter() - t
    assert all(np.allclose(a, b) for a, b in zip(nb, to_notebook(fm)))
    print(f"same weights after {ITERATIONS} iterations (notebook {t_nb:.2f}s, fastmlp {t_fm:.2f}s)")

    # 3. the whole iteration in one compiled call: full-batch train_epoch is one update
    params = to_fastmlp(*start)
    t = time.perf_counter()
    for _ in range(ITERATIONS):
        F.train_epoch(params, X_rows, Y, lr=ALPHA, batch_size=None)
    t_epoch = time.perf_counter() - t
    assert all(np.allclose(a, b) for a, b in zip(nb, to_notebook(params)))
    acc = np.mean(F.predict(params, X_test) == data.y_test)
    print(f"train_epoch(batch_size=None) x {ITERATIONS}: same weights again ({t_epoch:.2f}s); "
          f"test accuracy {acc:.3f}")

    # 4. what the engine is for: minibatches (here 32 rows), a few epochs
    params = F.init([64, 32, 10], init="he", seed=0, dtype="float32")
    for epoch in range(10):
        logs = F.train_epoch(params, data.X_train, Y, lr=0.1, batch_size=32, rng=epoch)
    acc = np.mean(F.predict(params, data.X_test) == data.y_test)
    print(f"64-32-10, minibatch SGD, 10 epochs: train loss {logs['loss']:.3f}, test accuracy {acc:.3f}")

    # back to the notebook's layout, e.g. to keep using its helper functions
    W1, b1, W2, b2 = to_notebook(params)
    A2 = forward_prop(W1, b1, W2, b2, data.X_test.T)[-1]
    assert np.allclose(A2.T, F.forward(params, data.X_test).output, atol=1e-5)
    print(f"converted back: W1 {W1.shape}, b1 {b1.shape}; notebook accuracy "
          f"{get_accuracy(get_predictions(A2), data.y_test):.3f}")


if __name__ == "__main__":
    main()
