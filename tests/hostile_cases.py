"""Hostile inputs for every public entry point, as data: (id, code, expected).

``code`` runs in a namespace that test_hostile.py's child process prepares (see SETUP there):
``np``, ``MLP``, ``F`` (the functional API), ``load``, the errors, ``X``/``y`` (a small
classification problem, 4 features and 3 classes), ``model`` (an MLP trained on it), ``tmp``
(a fresh folder, a pathlib.Path), ``write(name, data)`` and ``cli(*args)`` (fastmlp's command line
in-process, returning its exit code). ``expected`` is "ok" (the code runs, its asserts hold) or
(exception class name, regex the message must match).
"""

OK = "ok"


def _raises(kind, pattern=""):
    return (kind, pattern)


VE, TE, AE = "ValueError", "TypeError", "AttributeError"

CONSTRUCTOR = [
    ("layers-empty", "MLP([])", _raises(VE, "layers")),
    ("layers-one", "MLP([4])", _raises(VE, "layers")),
    ("layers-zero", "MLP([4, 0, 3])", _raises(VE, "layers")),
    ("layers-negative", "MLP([4, -2, 3])", _raises(VE, "layers")),
    ("layers-float", "MLP([4, 2.5, 3])", _raises(VE, "positive integer")),
    ("layers-string", "MLP('4,3')", _raises(TE, "layers")),
    ("layers-huge", "MLP([10**6, 10**6, 10])", _raises(VE, "GiB for their weights")),
    ("activation-unknown", "MLP([4, 3], activation='rleu')", _raises(VE, "Did you mean 'relu'")),
    ("output-unknown", "MLP([4, 3], output='softmx')", _raises(VE, "output=")),
    ("init-unknown", "MLP([4, 3], init='xavier')", _raises(VE, "init=")),
    ("dtype-float16", "MLP([4, 3], dtype='float16')", _raises(VE, "dtype")),
    ("seed-negative", "MLP([4, 3], seed=-1)", _raises(VE, "seed")),
    ("seed-float", "MLP([4, 3], seed=1.5)", _raises(TE, "seed")),
    ("threads-zero", "MLP([4, 3], threads=0)", _raises(VE, "threads")),
    ("engine-unknown", "MLP([4, 3], engine='torch')", _raises(VE, "engine=")),
    ("softmax-one-output", "MLP([4, 1])", _raises(VE, "at least 2 output units")),
    ("threads-above-cores", "m = MLP([4, 8, 3], threads=64); m.fit(X, y, epochs=1); "
                            "assert np.isfinite(m.predict_proba(X)).all()", OK),
]

FIT = [
    ("X-none", "MLP([4, 3]).fit(None, y)", _raises(TE, "X")),
    ("X-1d", "MLP([4, 3]).fit(X[:, 0], y)", _raises(VE, "2-D")),
    ("X-3d", "MLP([4, 3]).fit(X[:, :, None], y)", _raises(VE, "2-D")),
    ("X-strings", "MLP([4, 3]).fit(np.full(X.shape, 'a'), y)", _raises(TE, "real numbers")),
    ("X-object", "MLP([4, 3]).fit(X.astype(object), y)", _raises(TE, "real numbers")),
    ("X-nan", "Xn = X.copy(); Xn[3, 1] = np.nan; MLP([4, 3]).fit(Xn, y)", _raises(VE, "NaN")),
    ("X-inf", "Xn = X.copy(); Xn[0, 0] = np.inf; MLP([4, 3]).fit(Xn, y)", _raises(VE, "Inf")),
    ("X-empty", "MLP([4, 3]).fit(X[:0], y[:0])", _raises(VE, "empty")),
    ("X-features", "MLP([4, 3]).fit(X[:, :3], y)", _raises(VE, "3 features")),
    ("X-float16", "MLP([4, 3]).fit(X.astype(np.float16), y, epochs=1)", OK),
    ("X-int", "MLP([4, 3]).fit((X * 10).astype(int), y, epochs=1)", OK),
    ("X-fortran", "MLP([4, 3]).fit(np.asfortranarray(X), y, epochs=1)", OK),
    ("X-readonly", "Xr = X.copy(); Xr.flags.writeable = False; MLP([4, 3]).fit(Xr, y, epochs=1)", OK),
    ("X-strided", "MLP([4, 3]).fit(np.repeat(X, 2, axis=1)[:, ::2], y, epochs=1)", OK),
    ("X-sparse", "import scipy.sparse as sp; MLP([4, 3]).fit(sp.csr_matrix(X), y)",
     _raises(TE, r"sparse.*toarray\(\)")),
    ("y-none", "MLP([4, 3]).fit(X, None)", _raises(TE, "y is None")),
    ("y-onehot", "MLP([4, 3]).fit(X, np.eye(3)[y])", _raises(VE, "argmax")),
    ("y-fraction", "MLP([4, 3]).fit(X, y + 0.5)", _raises(VE, "whole number")),
    ("y-1e20", "MLP([4, 3]).fit(X, np.r_[1e20, y[1:].astype(float)])", _raises(VE, "too large")),
    ("y-uint64-max", "MLP([4, 3]).fit(X, np.r_[np.uint64(2**64 - 1), y[1:].astype(np.uint64)])",
     _raises(VE, "label above")),
    ("y-nan", "MLP([4, 3]).fit(X, np.r_[np.nan, y[1:]])", _raises(VE, "NaN")),
    ("y-length", "MLP([4, 3]).fit(X, y[:-1])", _raises(VE, "samples")),
    ("y-one-class", "MLP([4, 3]).fit(X, np.zeros(len(X), int))", _raises(VE, "single class")),
    ("y-too-many-classes", "MLP([4, 3]).fit(X, np.arange(len(X)) % 5 + 10)", _raises(VE, "classes")),
    ("y-mixed-types", "MLP([4, 3]).fit(X, np.array([1, 'a'] * (len(X) // 2), dtype=object))",
     _raises(TE, "mixes types")),
    ("epochs-zero", "MLP([4, 3]).fit(X, y, epochs=0)", _raises(VE, "epochs")),
    ("epochs-float", "MLP([4, 3]).fit(X, y, epochs=1.5)", _raises(TE, "epochs")),
    ("epochs-string", "MLP([4, 3]).fit(X, y, epochs='3')", _raises(TE, "epochs")),
    ("lr-zero", "MLP([4, 3]).fit(X, y, lr=0)", _raises(VE, "lr")),
    ("lr-nan", "MLP([4, 3]).fit(X, y, lr=float('nan'))", _raises(VE, "lr must be finite")),
    ("lr-inf", "MLP([4, 3]).fit(X, y, lr=float('inf'))", _raises(VE, "lr")),
    ("lr-string", "MLP([4, 3]).fit(X, y, lr='0.1')", _raises(TE, "lr")),
    ("batch-zero", "MLP([4, 3]).fit(X, y, batch_size=0)", _raises(VE, "batch_size")),
    ("batch-float", "MLP([4, 3]).fit(X, y, batch_size=8.0)", _raises(TE, "batch_size")),
    ("batch-above-n-is-full-batch",
     "a, b = MLP([4, 3], seed=1), MLP([4, 3], seed=1); a.fit(X, y, epochs=2, batch_size=10**6, "
     "shuffle=False); b.fit(X, y, epochs=2, batch_size=None, shuffle=False); "
     "assert np.array_equal(a._flat, b._flat)", OK),
    ("momentum-one", "MLP([4, 3]).fit(X, y, momentum=1.0)", _raises(VE, "momentum")),
    ("optimizer-unknown", "MLP([4, 3]).fit(X, y, optimizer='adamw')", _raises(VE, "Did you mean")),
    ("weight-decay-negative", "MLP([4, 3]).fit(X, y, weight_decay=-1)", _raises(VE, "weight_decay")),
    ("beta1-one", "MLP([4, 3]).fit(X, y, optimizer='adam', beta1=1.0)", _raises(VE, "beta1")),
    ("eps-zero", "MLP([4, 3]).fit(X, y, optimizer='adam', eps=0)", _raises(VE, "eps")),
    ("schedule-unknown", "MLP([4, 3]).fit(X, y, lr_schedule='cosin')", _raises(VE, "lr_schedule")),
    ("schedule-dict-no-zero", "MLP([4, 3]).fit(X, y, lr_schedule={5: 0.1})", _raises(VE, "epoch 0")),
    ("schedule-callable-nan", "MLP([4, 3]).fit(X, y, lr_schedule=lambda e: float('nan'))",
     _raises(VE, r"lr_schedule\(0\)")),
    ("val-split-one", "MLP([4, 3]).fit(X, y, validation_split=1.0)", _raises(VE, "validation_split")),
    ("val-data-shape", "MLP([4, 3]).fit(X, y, validation_data=(X[:, :2], y))", _raises(VE, "features")),
    ("val-data-not-pair", "MLP([4, 3]).fit(X, y, validation_data=X)", _raises(TE, "tuple")),
    ("early-stop-no-val", "MLP([4, 3]).fit(X, y, early_stopping=2)", _raises(VE, "validation")),
    ("callbacks-number", "MLP([4, 3]).fit(X, y, callbacks=[3])", _raises(TE, "callable")),
    ("checkpoint-missing-folder", "MLP([4, 3]).fit(X, y, checkpoint=str(tmp / 'no' / 'c.npz'))",
     _raises("FileNotFoundError", "does not exist")),
    ("checkpoint-is-folder", "MLP([4, 3]).fit(X, y, checkpoint=str(tmp))",
     _raises("IsADirectoryError", "directory")),
    ("checkpoint-unwritable", "MLP([4, 3]).fit(X, y, checkpoint='/proc/c.npz')",
     _raises("PermissionError", "cannot write")),
    ("checkpoint-every-alone", "MLP([4, 3]).fit(X, y, checkpoint_every=2)", _raises(VE, "checkpoint")),
    ("sample-weight-negative", "MLP([4, 3]).fit(X, y, sample_weight=-np.ones(len(X)))",
     _raises(VE, ">= 0")),
    ("sample-weight-nan", "MLP([4, 3]).fit(X, y, sample_weight=np.r_[np.nan, np.ones(len(X) - 1)])",
     _raises(VE, "finite")),
    ("sample-weight-zero", "MLP([4, 3]).fit(X, y, sample_weight=np.zeros(len(X)))",
     _raises(VE, "all zero")),
    ("sample-weight-length", "MLP([4, 3]).fit(X, y, sample_weight=np.ones(3))", _raises(VE, "shape")),
    ("diverge-finite-loss",
     "m = MLP([4, 64, 3]);\ntry:\n    m.fit(X * 100, y, lr=1e4, epochs=3)\n    raise SystemExit('no error')\n"
     "except TrainingDiverged as e:\n    assert 'exploded' in str(e) or 'grew' in str(e) or 'loss=' in str(e)\n"
     "assert np.isfinite(m.predict_proba(X)).all()", OK),
    ("diverge-float32-huge-lr",
     "m = MLP([4, 16, 3]);\ntry:\n    m.fit(X, y, lr=1e30, epochs=2)\n    raise SystemExit('no error')\n"
     "except TrainingDiverged:\n    pass\nassert np.isfinite(m.predict_proba(X)).all()", OK),
    ("fit-after-failed-fit-still-clean",
     "m = MLP([4, 3]); before = m._flat.copy()\ntry:\n    m.fit(X, y, lr=-1)\nexcept ValueError:\n"
     "    pass\nassert np.array_equal(before, m._flat) and not m.fitted_", OK),
]

ATTRIBUTES = [
    ("set-layers", "model.layers = [4, 8, 5]", _raises(AE, "fixed")),
    ("set-dtype", "model.dtype = 'float64'", _raises(AE, "fixed")),
    ("set-seed", "model.seed = 3", _raises(AE, "fixed")),
    ("set-init", "model.init = 'normal'", _raises(AE, "fixed")),
    ("set-classes-shorter", "model.classes_ = np.array([0, 1])", _raises(VE, "classes_")),
    ("set-classes-unsorted", "model.classes_ = np.array([2, 0, 1])", _raises(VE, "sorted")),
    ("set-classes-2d", "model.classes_ = np.zeros((3, 1))", _raises(VE, "classes_")),
    ("set-output-unknown", "model.output = 'x'", _raises(VE, "output=")),
    ("set-activation-unknown", "model.activation = 'x'", _raises(VE, "activation=")),
    ("set-threads-zero", "model.threads = 0", _raises(VE, "threads")),
    ("set-engine-unknown", "model.engine = 'x'", _raises(VE, "engine=")),
    ("set-activation-ok", "model.activation = 'tanh'; assert model.predict(X).shape == (len(X),)", OK),
    ("set-params-shape", "model.params = [(np.zeros((3, 8)), np.zeros(8)), model.params[1]]",
     _raises(VE, "shape")),
    ("set-params-nan", "model.params = [(np.full((4, 8), np.nan), np.zeros(8)), model.params[1]]",
     _raises(VE, "finite")),
    ("set-params-count", "model.params = model.params[:1]", _raises(VE, "pairs")),
    ("set-classes-strings-ok", "model.classes_ = np.array(['a', 'b', 'c']); "
                               "assert set(model.predict(X)) <= {'a', 'b', 'c'}", OK),
]

INFERENCE = [
    ("predict-unfitted", "MLP([4, 3]).predict(X)", _raises("NotFittedError", "fit")),
    ("predict-features", "model.predict(X[:, :2])", _raises(VE, "features")),
    ("predict-nan", "Xn = X.copy(); Xn[0, 0] = np.nan; model.predict(Xn)", _raises(VE, "NaN")),
    ("predict-empty", "model.predict(X[:0])", _raises(VE, "empty")),
    ("evaluate-unknown-label", "model.evaluate(X, y + 7)", _raises(VE, "not one of the model")),
    ("evaluate-length", "model.evaluate(X, y[:5])", _raises(VE, "samples")),
    ("proba-regression", "m = MLP([4, 2], output='identity'); m.fit(X, X[:, :2], epochs=1); "
                         "m.predict_proba(X)", _raises(VE, "classifiers")),
    ("score-ok", "assert 0 <= model.score(X, y) <= 1", OK),
    ("predict-one-row", "assert model.predict(X[:1]).shape == (1,)", OK),
]

FUNCTIONAL = [
    ("f-init-bad-layers", "F.init([4])", _raises(VE, "layers")),
    ("f-params-not-list", "F.forward(np.zeros((4, 3)), X)", _raises(TE, "list of")),
    ("f-params-W-1d", "F.forward([(np.zeros(4), np.zeros(3))], X)", _raises(VE, "2-D")),
    ("f-params-b-column", "F.forward([(np.zeros((4, 3)), np.zeros((3, 1)))], X)",
     _raises(VE, r"b\.ravel")),
    ("f-params-mixed-dtypes", "p = F.init([4, 3], dtype='float64'); "
                              "F.forward([(p[0][0].astype(np.float32), p[0][1])], X)",
     _raises(TE, "mix")),
    ("f-params-int", "F.forward([(np.zeros((4, 3), int), np.zeros(3, int))], X)", _raises(TE, "dtype")),
    ("f-predict-nan-weights", "p = F.init([4, 3]); p[0][0][0, 0] = np.nan; F.predict(p, X)",
     _raises(VE, "NaN")),
    ("f-backward-not-forward", "p = F.init([4, 3]); F.backward(p, [X], y)", _raises(TE, "Forward")),
    ("f-backward-more-rows",
     "p = F.init([4, 8, 3]); fw = F.forward(p, X)\n"
     "big = F.Forward([np.vstack([a, a]) for a in fw.activations[:-1]] + [fw.activations[-1]], fw.output)\n"
     "F.backward(p, big, y)", _raises(VE, "same n")),
    ("f-backward-other-widths",
     "p = F.init([4, 8, 3]); fw = F.forward(p, X)\n"
     "F.backward(p, F.Forward([fw.activations[0], fw.activations[1][:, :5], fw.activations[2]], fw.output), y)",
     _raises(VE, r"\(n, 8\)")),
    ("f-backward-narrow-logits",
     "p = F.init([4, 8, 3]); fw = F.forward(p, X)\n"
     "F.backward(p, F.Forward(fw.activations[:2] + [fw.activations[2][:, :2]], fw.output), y)",
     _raises(VE, r"\(n, 3\)")),
    ("f-backward-other-dtype",
     "p = F.init([4, 8, 3]); fw = F.forward(p, X)\n"
     "F.backward(p, F.Forward([a.astype(np.float64) for a in fw.activations], fw.output), y)",
     _raises(TE, "float64")),
    ("f-backward-y-length", "p = F.init([4, 8, 3]); F.backward(p, F.forward(p, X), y[:5])",
     _raises(VE, "samples")),
    ("f-backward-zero-rows", "p = F.init([4, 3]); F.backward(p, F.forward(p, X)._replace("
                             "activations=[X[:0], np.zeros((0, 3), np.float32)]), y[:0])",
     _raises(VE, "no rows")),
    ("f-labels-out-of-range", "F.loss_and_grad(F.init([4, 3]), X, y + 1)", _raises(VE, "class indices")),
    ("f-identity-targets-shape", "F.loss_and_grad(F.init([4, 2]), X, X[:, :3], output='identity')",
     _raises(VE, "")),
    ("f-step-grads-shape", "p = F.init([4, 3]); F.step(p, [(np.zeros((3, 3)), np.zeros(3))], lr=0.1)",
     _raises(VE, "grads")),
    ("f-step-lr-zero", "p = F.init([4, 3]); F.step(p, [(np.zeros((4, 3)), np.zeros(3))], lr=0)",
     _raises(VE, "lr")),
    ("f-train-readonly", "p = [(W.copy(), b.copy()) for W, b in F.init([4, 3])]; "
                         "p[0][0].flags.writeable = False; F.train_epoch(p, X, y, lr=0.1)",
     _raises(VE, "read-only")),
    ("f-train-diverges-finite",
     "p = F.init([4, 16, 3])\ntry:\n    F.train_epoch(p, X, y, lr=1e30)\n    raise SystemExit('no error')\n"
     "except TrainingDiverged:\n    pass\nassert all(np.isfinite(W).all() for W, _ in p)", OK),
    ("f-train-batch-above-n", "p = F.init([4, 3]); F.train_epoch(p, X, y, lr=0.1, batch_size=10**6)", OK),
]

DATA = [
    ("data-missing", "load(tmp / 'nothing.npz')", _raises("DataError", "no such file")),
    ("data-folder-no-idx", "(tmp / 'd').mkdir(); load(tmp / 'd')", _raises("DataError", "no MNIST-style")),
    ("idx-empty", "load(write('e-images-idx3-ubyte', b''))", _raises("DataError", "not an IDX file")),
    ("idx-truncated", "load(write('t-images-idx3-ubyte', idx(np.zeros((5, 4, 4), np.uint8))[:-9]))",
     _raises("DataError", "truncated")),
    ("idx-gzip-bomb",
     "import gzip\nraw = idx(np.zeros((10, 28, 28), np.uint8))\n"
     "big = gzip.compress(raw + bytes(1 << 26))\nr = read_idx(write('b-images-idx3-ubyte.gz', big))",
     _raises("DataError", "more bytes follow")),
    ("idx-header-huge", "read_idx(write('h-images-idx3-ubyte', b'\\0\\0\\x08\\x03' + "
                        "np.array([100000, 10000, 10000], '>u4').tobytes() + bytes(100)))",
     _raises("DataError", "truncated IDX")),
    ("idx-folder-missing-labels",
     "(tmp / 'm').mkdir(); write('m/t10k-images-idx3-ubyte', idx(np.zeros((5, 4, 4), np.uint8))); "
     "load(tmp / 'm')", _raises("DataError", "no matching test labels")),
    ("npz-not-zip", "load(write('x.npz', b'hello'))", _raises("DataError", "not a .npz")),
    ("npz-pickle", "np.savez(tmp / 'p.npz', X=np.array([object()], dtype=object), y=np.arange(1)); "
                   "load(tmp / 'p.npz')", _raises("DataError", "")),
    ("npz-missing-y", "np.savez(tmp / 'q.npz', X=X); load(tmp / 'q.npz')", _raises("DataError", "no 'y'")),
    ("npz-empty-X", "np.savez(tmp / 'z.npz', X=X[:0], y=y[:0]); load(tmp / 'z.npz')",
     _raises("DataError", "no images")),
    ("npz-0d-X", "np.savez(tmp / 'o.npz', X=np.array(3.0), y=np.array(1)); load(tmp / 'o.npz')",
     _raises("DataError", "single value")),
    ("npz-lying-header", "load(lying_npz(tmp / 'l.npz'))", _raises("DataError", "declares shape")),
    ("csv-empty", "load(write('e.csv', b'\\n'))", _raises("DataError", "empty")),
    ("csv-label-inf", "load(write('i.csv', b'inf,1,2\\n0,3,4\\n'))", _raises("DataError", "label inf")),
    ("csv-label-huge", "load(write('h.csv', b'99999999999999999999,1,2\\n0,3,4\\n'))",
     _raises("DataError", "label")),
    ("csv-label-negative", "load(write('n.csv', b'-1,1,2\\n0,3,4\\n'))", _raises("DataError", "label -1")),
    ("csv-label-fraction", "load(write('f.csv', b'1.5,1,2\\n0,3,4\\n'))", _raises("DataError", "label 1.5")),
    ("csv-pixel-300", "load(write('p.csv', b'1,300,2\\n0,3,4\\n'))", _raises("DataError", "300")),
    ("csv-ragged", "load(write('r.csv', b'1,1,2\\n0,3\\n'))", _raises("DataError", "line 2")),
    ("csv-label-2147483647", "load(write('m.csv', b'2147483647,1,2\\n0,3,4\\n'))",
     _raises("DataError", "label")),
]

MODEL_FILES = [
    ("file-missing", "MLP.load(tmp / 'none.npz')", _raises("FileNotFoundError", "no model file")),
    ("file-empty", "MLP.load(write('e.npz', b''))", _raises("ModelFileError", "empty")),
    ("file-not-zip", "MLP.load(write('n.npz', b'not a zip file'))", _raises("ModelFileError", "zip")),
    ("file-pickle", "np.savez(tmp / 'p.npz', config=np.array([object()], dtype=object)); "
                    "MLP.load(tmp / 'p.npz')", _raises("ModelFileError", "pickle")),
    ("file-no-config", "np.savez(tmp / 'c.npz', params=np.zeros(3)); MLP.load(tmp / 'c.npz')",
     _raises("ModelFileError", "no config")),
    ("file-bad-json", "np.savez(tmp / 'j.npz', config=np.array('{nope')); MLP.load(tmp / 'j.npz')",
     _raises("ModelFileError", "damaged config")),
    ("file-newer-format", "import json; np.savez(tmp / 'v.npz', config=np.array(json.dumps("
                          "{'format': 'fastmlp-model', 'format_version': 99}))); "
                          "MLP.load(tmp / 'v.npz')", _raises("ModelFileError", "Upgrade")),
    ("file-layers-bomb", "rewrite_model(tmp / 'b.npz', model={'layers': [12000, 12000, 10]}); "
                         "MLP.load(tmp / 'b.npz')", _raises("ModelFileError", "do not match")),
    ("file-layers-10e6", "rewrite_model(tmp / 'c.npz', model={'layers': [10**6, 10**6, 10]}); "
                         "MLP.load(tmp / 'c.npz')", _raises("ModelFileError", "do not match")),
    ("file-nan-params", "rewrite_model(tmp / 'n.npz', params=np.nan); MLP.load(tmp / 'n.npz')",
     _raises("ModelFileError", "NaN")),
    ("file-bad-classes", "rewrite_model(tmp / 'k.npz', classes=np.array([2, 1, 0])); "
                         "MLP.load(tmp / 'k.npz')", _raises("ModelFileError", "classes")),
    ("file-lying-member", "MLP.load(lying_npz(tmp / 'm.npz', config=True))",
     _raises("ModelFileError", "declares shape")),
    ("save-cleans-stale-temporaries",
     "p = tmp / 'model.npz'; write('.model.npz.fastmlp-tmp-dead', b'x' * 100); model.save(p); "
     "assert sorted(f.name for f in tmp.iterdir()) == ['model.npz']", OK),
    ("save-into-missing-folder", "model.save(tmp / 'no' / 'm.npz')", _raises("OSError", "")),
    ("save-over-folder", "model.save(tmp)", _raises("OSError", "")),
]

CHECKPOINTS = [
    ("resume-from-model-file", "model.save(tmp / 'm.npz'); MLP([4, 8, 3]).fit(X, y, resume=tmp / 'm.npz')",
     _raises("ModelFileError", "not a checkpoint")),
    ("resume-missing", "MLP([4, 8, 3]).fit(X, y, resume=tmp / 'none.npz')", _raises("FileNotFoundError", "")),
    ("resume-other-data",
     "c = tmp / 'c.npz'; MLP([4, 8, 3]).fit(X, y, epochs=2, checkpoint=c)\n"
     "MLP([4, 8, 3]).fit(X * 2, y, epochs=3, resume=c)", _raises(VE, "")),
    ("resume-bad-rng",
     "c = tmp / 'c.npz'; MLP([4, 8, 3]).fit(X, y, epochs=1, checkpoint=c); damage_rng(c)\n"
     "MLP([4, 8, 3]).fit(X, y, epochs=2, resume=c)", _raises("ModelFileError", "generator")),
    ("checkpoint-ok-then-resume",
     "c = tmp / 'c.npz'; a = MLP([4, 8, 3]); a.fit(X, y, epochs=2, checkpoint=c)\n"
     "b = MLP([4, 8, 3]); b.fit(X, y, epochs=2, resume=c); assert np.array_equal(a._flat, b._flat)", OK),
]

CLI = [
    ("cli-out-is-data",
     "np.savez(tmp / 'd.npz', X=(X * 50).astype(np.uint8), y=y); before = (tmp / 'd.npz').read_bytes()\n"
     "assert cli('train', '--data', str(tmp / 'd.npz'), '--layers', '4,8,3', '--epochs', '1', "
     "'--out', str(tmp / 'd.npz')) == 1\nassert (tmp / 'd.npz').read_bytes() == before", OK),
    ("cli-predict-out-is-model",
     "np.savez(tmp / 'd.npz', X=(X * 50).astype(np.uint8), y=y); model.save(tmp / 'm.npz')\n"
     "before = (tmp / 'm.npz').read_bytes()\n"
     "assert cli('predict', str(tmp / 'm.npz'), '--data', str(tmp / 'd.npz'), '--out', "
     "str(tmp / 'm.npz')) == 1\nassert (tmp / 'm.npz').read_bytes() == before", OK),
    ("cli-out-missing-folder",
     "assert cli('train', '--out', str(tmp / 'no' / 'm.npz')) == 1", OK),
    ("cli-out-is-folder", "assert cli('train', '--out', str(tmp)) == 1", OK),
    ("cli-out-unwritable", "import time; t = time.perf_counter()\n"
                           "assert cli('train', '--out', '/proc/m.npz') == 1\n"
                           "assert time.perf_counter() - t < 5, 'refused only after training'", OK),
    ("cli-label-ids-refused",
     "yy = y.copy(); yy[0] = 1000000; np.savez(tmp / 'd.npz', X=(X * 50).astype(np.uint8), y=yy)\n"
     "assert cli('train', '--data', str(tmp / 'd.npz'), '--epochs', '1', '--out', "
     "str(tmp / 'm.npz')) == 1\nassert not (tmp / 'm.npz').exists()", OK),
    ("cli-bad-layers", "assert cli('train', '--layers', '64,abc,10') == 1", OK),
    ("cli-epochs-zero", "assert cli('train', '--epochs', '0') == 2", OK),
    ("cli-unknown-command", "assert cli('bogus') == 2", OK),
    ("cli-evaluate-missing-model", "assert cli('evaluate', str(tmp / 'none.npz')) == 1", OK),
    ("cli-show-out-without-show", "assert cli('predict', 'm.npz', '--show-out', 'x.png') == 1", OK),
    ("cli-predict-out-atomic",
     "np.savez(tmp / 'd.npz', X=(X * 50).astype(np.uint8), y=y); model.save(tmp / 'm.npz')\n"
     "assert cli('predict', str(tmp / 'm.npz'), '--data', str(tmp / 'd.npz'), '--out', "
     "str(tmp / 'p.csv')) == 0\n"
     "assert sorted(f.name for f in tmp.iterdir()) == ['d.npz', 'm.npz', 'p.csv']", OK),
]

SKLEARN = [
    ("sk-coefs-rows", "c = fitted_clf(); c.coefs_[0] = np.zeros((50, c.coefs_[0].shape[1])); "
                      "c.predict(np.zeros((3, 50)))", _raises(VE, "")),
    ("sk-coefs-rows-same-X", "c = fitted_clf(); c.coefs_[0] = np.zeros((50, c.coefs_[0].shape[1])); "
                             "c.predict(X)", _raises(VE, "coefs_")),
    ("sk-classes-unsorted-partial", "c = fitted_clf(); c.classes_ = np.array([2, 0, 1]); "
                                    "c.partial_fit(X, y)", _raises(VE, "sorted")),
    ("sk-intercepts-shape", "c = fitted_clf(); c.intercepts_[0] = np.zeros(2); c.predict(X)",
     _raises(VE, "intercepts_")),
    ("sk-n-outputs", "c = fitted_clf(); c.n_outputs_ = 7; c.predict(X)", _raises(VE, "n_outputs_")),
    ("sk-coefs-nan", "c = fitted_clf(); c.coefs_[1] = c.coefs_[1] * np.nan; c.predict(X)",
     _raises(VE, "NaN")),
    ("sk-coefs-list-length", "c = fitted_clf(); c.coefs_ = c.coefs_[:1]; c.predict(X)", _raises(VE, "")),
    ("sk-hidden-bad", "MLPClassifier(hidden_layer_sizes=(0,)).fit(X, y)", _raises(VE, "hidden_layer_sizes")),
    ("sk-activation-bad", "MLPClassifier(activation='x').fit(X, y)", _raises(VE, "activation")),
    ("sk-solver-bad", "MLPClassifier(solver='x').fit(X, y)", _raises(VE, "solver")),
    ("sk-alpha-negative", "MLPClassifier(alpha=-1).fit(X, y)", _raises(VE, "alpha")),
    ("sk-batch-zero", "MLPClassifier(batch_size=0).fit(X, y)", _raises(VE, "batch_size")),
    ("sk-max-iter-zero", "MLPClassifier(max_iter=0).fit(X, y)", _raises(VE, "max_iter")),
    ("sk-weights-negative", "MLPClassifier(max_iter=2).fit(X, y, sample_weight=-np.ones(len(X)))",
     _raises(VE, ">= 0")),
    ("sk-X-nan", "Xn = X.copy(); Xn[0, 0] = np.nan; MLPClassifier(max_iter=2).fit(Xn, y)",
     _raises(VE, "NaN")),
    ("sk-predict-unfitted", "MLPClassifier().predict(X)", _raises("NotFittedError", "")),
    ("sk-regressor-ok", "r = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5).fit(X, X[:, 0]); "
                        "assert np.isfinite(r.predict(X)).all()", OK),
]

THREADS_AND_FORKS = [
    ("two-python-threads",
     "import threading\nout = {}\n"
     "def job(k):\n    m = MLP([4, 8, 3], seed=k); m.fit(X, y, epochs=2); out[k] = m._flat.copy()\n"
     "ts = [threading.Thread(target=job, args=(k,)) for k in (1, 2)]\n[t.start() for t in ts]; "
     "[t.join() for t in ts]\n"
     "for k in (1, 2):\n    m = MLP([4, 8, 3], seed=k); m.fit(X, y, epochs=2); "
     "assert np.array_equal(m._flat, out[k])", OK),
    ("fork-after-fit",
     "import multiprocessing as mp\nctx = mp.get_context('fork')\n"
     "with ctx.Pool(1) as pool:\n    r = pool.apply(predict_in_child, (model._flat.copy(),))\n"
     "assert np.array_equal(r, model.predict(X))", OK),
]

GROUPS = {
    "constructor": CONSTRUCTOR, "fit": FIT, "attributes": ATTRIBUTES, "inference": INFERENCE,
    "functional": FUNCTIONAL, "data": DATA, "model_files": MODEL_FILES,
    "checkpoints": CHECKPOINTS, "cli": CLI, "sklearn": SKLEARN, "threads": THREADS_AND_FORKS,
}
