"""The command line end to end, in subprocesses (``python -m fastmlp ...``), plus its text helpers
in-process: train / evaluate / predict / info on the built-in digits and on files the tests
write (npz, IDX), one-line errors, --help, and Ctrl-C during training."""

import gzip
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fastmlp import MLP, cli

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("sklearn", reason="the built-in digits come with scikit-learn")


def env():
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path, COLUMNS="100", PYTHONIOENCODING="utf-8")


def run(*args, cwd, timeout=120):
    """``python -m fastmlp ARGS`` in ``cwd``; the CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "fastmlp", *map(str, args)], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=timeout)


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("fastmlp: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A model trained by ``fastmlp train`` on the built-in digits, and the folder it is in."""
    folder = tmp_path_factory.mktemp("digits")
    out = ok(run("train", "--epochs", "3", cwd=folder))
    return folder, out


def write_idx(path, array):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def synthetic_images(n, side, n_classes, seed=0):
    """uint8 images (n, side, side): class k lights up row band k, plus noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    images = rng.integers(0, 60, (n, side, side))
    band = side // n_classes
    for k in range(n_classes):
        images[y == k, k * band:(k + 1) * band, :] += 180
    return images.clip(0, 255).astype(np.uint8), y.astype(np.uint8)


# ---------------------------------------------------------------- train, evaluate, predict


def test_train_defaults_on_the_builtin_digits(digits_model):
    folder, out = digits_model
    assert (folder / "model.npz").is_file()
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines if line.startswith("epoch ")] == \
        [["epoch", "1"], ["epoch", "2"], ["epoch", "3"]]
    assert "layers 64,128,10" in out
    test_line = next(line for line in lines if line.startswith("test: accuracy"))
    assert float(test_line.split()[2].rstrip(",")) > 0.8, test_line
    assert "saved the model to model.npz" in out
    model = MLP.load(folder / "model.npz")
    assert model.layers == (64, 128, 10)
    assert model.history_["epoch"] == [1, 2, 3]


def test_evaluate_prints_accuracy_per_class_and_confusion(digits_model):
    folder, _ = digits_model
    out = ok(run("evaluate", "model.npz", cwd=folder))
    assert "accuracy" in out and "loss" in out
    assert "test set, 359 images" in out
    assert "confusion matrix" in out
    rows = out[out.index("true\\pred"):].splitlines()
    assert rows[0].split()[1:] == [str(k) for k in range(10)]
    matrix = np.array([[int(v) for v in row.split()[1:]] for row in rows[1:11]])
    assert matrix.shape == (10, 10) and matrix.sum() == 359
    accuracy = float(out.split("accuracy ")[1].split()[0])
    assert np.trace(matrix) / 359 == pytest.approx(accuracy, abs=1e-4)
    per_class = out[out.index("class  images"):].splitlines()[1:11]
    assert [int(row.split()[1]) for row in per_class] == matrix.sum(axis=1).tolist()


def test_evaluate_plot_writes_a_png(digits_model):
    pytest.importorskip("matplotlib", reason='matplotlib is an optional extra: pip install "fastmlp[plot]"')
    folder, _ = digits_model
    ok(run("evaluate", "model.npz", "--split", "train", "--plot", "confusion.png", cwd=folder))
    assert (folder / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_predict_writes_labels(digits_model):
    folder, _ = digits_model
    out = ok(run("predict", "model.npz", "--out", "preds.csv", cwd=folder))
    assert "wrote 359 predictions" in out
    lines = (folder / "preds.csv").read_text().splitlines()
    assert lines[0] == "index,prediction,label"
    assert len(lines) == 360
    pred = np.array([int(line.split(",")[1]) for line in lines[1:]])
    assert set(pred) <= set(range(10))
    # to standard output, as the same CSV, when neither --out nor --show is given
    stdout = ok(run("predict", "model.npz", cwd=folder))
    assert stdout.splitlines() == lines


def test_predict_show_renders_images_in_the_terminal(digits_model):
    folder, _ = digits_model
    out = ok(run("predict", "model.npz", "--show", "2", cwd=folder))
    assert "#0 pred" in out and "#1 pred" in out and "true" in out
    art = [line for line in out.splitlines() if set(line) & set("░▒▓█")]
    assert len(art) == 8, out       # two 8x8 images side by side: 8 lines of block art


def test_predict_show_out_writes_a_png(digits_model):
    pytest.importorskip("matplotlib", reason='matplotlib is an optional extra: pip install "fastmlp[plot]"')
    folder, _ = digits_model
    out = ok(run("predict", "model.npz", "--show", "4", "--show-out", "images.png", cwd=folder))
    assert "saved 4 images" in out
    assert (folder / "images.png").read_bytes()[:4] == b"\x89PNG"


def test_info(tmp_path):
    out = ok(run("info", cwd=tmp_path))
    for key in ("fastmlp", "python", "numpy", "numba", "cores", "numba threads", "threading layer",
                "BLAS", "numba cache", "thread count"):
        assert any(line.startswith(key + " ") for line in out.splitlines()), key
    assert "unknown" not in out.split("threading layer")[1].splitlines()[0]


def test_info_reads_versions_without_importing_the_packages(tmp_path, monkeypatch):
    """From the distribution's metadata (importing scikit-learn took a second of ``info``); from
    the module where it has none; "not installed" where there is no module."""
    from importlib import metadata

    from fastmlp import info

    assert info._version_of("numpy", "numpy", "x") == np.__version__
    assert info._version_of("no_such_module_here", "numpy", "plot").startswith(
        'not installed (pip install "fastmlp[plot]")')
    (tmp_path / "plain_module_here.py").write_text("__version__ = '1.2.3'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.version("plain-module-here")
    assert info._version_of("plain_module_here", "plain-module-here", "x") == "1.2.3"


def test_info_shows_the_plan_of_a_model_and_why(tmp_path):
    from fastmlp.engine import tuner
    from fastmlp.engine.plan import plan_training

    out = ok(run("info", "--model", "784-512-256-10", "--batch-size", "128", cwd=tmp_path))
    chosen = plan_training(2, 128, (784, 512, 256, 10), 60000)
    lines = {line.strip().split("  ")[0]: line for line in out.splitlines()}
    assert f"the {chosen.scheme} scheme" in lines["training"]
    assert "MIN_MACS_PER_THREAD" in lines["threads"]
    if chosen.threads > 1 and tuner.mode() == "on":     # counts up to the bound are timed
        assert "the fastest of" in lines["threads"] and "FASTMLP_TUNE" in lines["threads"]
    assert "MIN_" in lines["scheme"] and "inference" in lines
    full = ok(run("info", "--model", "784-20-10", "--batch-size", "full", "--rows", "8000",
                  "--threads", "1", cwd=tmp_path))
    assert "the rows scheme" in full and "ROWS_MIN_BATCH" in full and "on 1 thread;" in full
    assert_one_line_error(run("info", "--model", "784-x", cwd=tmp_path), "--model", "784-128-10")


def test_train_on_an_npz_file_with_validation_and_plot(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(300) % 4
    X = rng.normal(size=(300, 16)).astype(np.float32) + 2.0 * np.eye(4, 16)[y]
    np.savez(tmp_path / "blobs.npz", X=X, y=y)
    args = ["train", "--data", "blobs.npz", "--layers", "16,8,4", "--epochs", "2", "--val-split", "0.2",
            "--optimizer", "adam", "--lr", "0.01", "--out", "blobs_model.npz"]
    has_mpl = subprocess.run([sys.executable, "-c", "import matplotlib"], capture_output=True).returncode == 0
    if has_mpl:
        args += ["--plot", "curves.png"]
    out = ok(run(*args, cwd=tmp_path))
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and all("val_accuracy" in line for line in epoch_lines)
    assert "test:" not in out                   # the file has no test set
    model = MLP.load(tmp_path / "blobs_model.npz")
    assert model.layers == (16, 8, 4) and model.history_["epoch"] == [1, 2]
    if has_mpl:
        assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_train_and_predict_on_idx_files(tmp_path):
    folder = tmp_path / "idx"
    folder.mkdir()
    images, labels = synthetic_images(200, 8, 3)
    write_idx(folder / "train-images-idx3-ubyte.gz", images)
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels)
    images, labels = synthetic_images(60, 8, 3, seed=1)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    out = ok(run("train", "--data", "idx", "--epochs", "3", "--batch-size", "16", "--quiet",
                 "--out", "idx.npz", cwd=tmp_path))
    assert "epoch " not in out, "--quiet prints no per-epoch lines"
    assert "test: accuracy" in out and "saved the model to idx.npz" in out
    assert MLP.load(tmp_path / "idx.npz").layers == (64, 128, 3)
    stdout = ok(run("predict", "idx.npz", "--data", "idx", cwd=tmp_path))
    assert len(stdout.splitlines()) == 61


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("args, fragments", [
    (["train", "--layers", "784,128,10"], ["--layers starts with 784", "64 features"]),
    (["train", "--data", "missing.npz"], ["missing.npz", "no such file"]),
    (["train", "--activation", "rleu"], ["--activation", "'rleu'", "did you mean 'relu'"]),
    (["evaluate", "missing.npz"], ["no model file at missing.npz"]),
])
def test_errors_are_one_line_without_traceback(tmp_path, args, fragments):
    assert_one_line_error(run(*args, cwd=tmp_path), *fragments)


@pytest.mark.parametrize("args, code, fragments", [
    (["train", "--layers", "64,abc,10"], 1, ["--layers", "whole numbers"]),
    (["train", "--epochs", "0"], 2, ["--epochs", "at least 1"]),
    (["train", "--lr", "-1"], 2, ["--lr", "above 0"]),
    (["train", "--out", "no/such/folder/m.npz"], 1, ["--out", "does not exist"]),
    (["train", "--val-split", "0", "--early-stopping", "2"], 1, ["--early-stopping needs a validation set"]),
    (["predict", "m.npz", "--show-out", "x.png"], 1, ["--show-out needs --show"]),
    (["bogus"], 2, ["invalid choice"]),
    ([], 2, ["choose a command", "train, evaluate, predict, export, info or bench"]),
    (["train", "--lr-schedule", "cosin"], 2, ["--lr-schedule", "did you mean 'cosine'"]),
    (["train", "--lr-schedule", "0:1,x:2"], 2, ["--lr-schedule", "FIRST_EPOCH:LR"]),
    (["train", "--batch-size", "fll"], 2, ["--batch-size", "whole number"]),
    (["train", "--checkpoint-every", "2"], 1, ["--checkpoint-every needs a file"]),
    (["train", "--data", "digits", "--test-split", "1.5"], 2, ["--test-split", "below 1"]),
    (["predict", "m.npz", "--format", "kagle"], 2, ["--format", "invalid choice"]),
])
def test_errors_in_process(tmp_path, monkeypatch, capsys, args, code, fragments):
    """The same one-line errors through cli.main, without starting an interpreter each; usage
    errors exit with 2, the others with 1."""
    monkeypatch.chdir(tmp_path)
    try:
        returned = cli.main(args)
    except SystemExit as exc:         # argparse exits
        returned = exc.code
    stderr = capsys.readouterr().err
    assert returned == code, stderr
    assert_one_line_error(subprocess.CompletedProcess(args, returned, "", stderr), *fragments)


def test_error_on_a_file_that_is_not_a_model(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.npz").write_text("hello")
    assert cli.main(["evaluate", "notes.npz"]) == 1
    assert_one_line_error(subprocess.CompletedProcess([], 1, "", capsys.readouterr().err),
                          "not a .npz file")


def test_help_of_every_command(tmp_path):
    out = ok(run("--help", cwd=tmp_path))
    for command in ("train", "evaluate", "predict", "export", "info", "bench"):
        assert command in out
    out = ok(run("train", "--help", cwd=tmp_path))
    for option in ("--data", "--layers", "--activation", "--output", "--epochs", "--batch-size",
                   "--lr", "--optimizer", "--momentum", "--weight-decay", "--val-split",
                   "--early-stopping", "--seed", "--threads", "--engine", "--dtype", "--out",
                   "--plot", "--quiet", "Ctrl-C", "--test-split", "--init", "--nesterov",
                   "--beta1", "--beta2", "--lr-schedule", "--no-shuffle", "--replacement",
                   "--checkpoint", "--checkpoint-every", "--resume"):
        assert option in out, option
    # the other commands in-process: the same parser, without three more interpreter starts
    parser = cli.build_parser()
    for command, options in (("evaluate", ["MODEL", "--data", "--split", "--plot"]),
                             ("predict", ["MODEL", "--data", "--out", "--show", "--show-out",
                                          "--format", "--test-split"]),
                             ("export", ["MODEL", "--onnx"]),
                             ("info", ["threading layer", "BLAS"])):
        text = parser._subparsers._group_actions[0].choices[command].format_help()
        for option in options:
            assert option in text, (command, option)


def test_predict_kaggle_format_numbers_images_from_1(digits_model):
    folder, _ = digits_model
    stdout = ok(run("predict", "model.npz", "--format", "kaggle", cwd=folder)).splitlines()
    plain = ok(run("predict", "model.npz", cwd=folder)).splitlines()
    assert stdout[0] == "ImageId,Label" and len(stdout) == 360
    assert [line.split(",")[0] for line in stdout[1:]] == [str(i) for i in range(1, 360)]
    assert [line.split(",")[1] for line in stdout[1:]] == [line.split(",")[1] for line in plain[1:]]


def test_a_closed_pipe_stops_the_printout_not_the_work(digits_model):
    """fastmlp evaluate ... --plot f.png | head -2: the picture is written, exit code 0, no
    message; so for predict's CSV on standard output and for train's epoch lines."""
    pytest.importorskip("matplotlib", reason='matplotlib is an optional extra: pip install "fastmlp[plot]"')
    folder, _ = digits_model
    command = [sys.executable, "-m", "fastmlp"]
    for args, made in [(["evaluate", "model.npz", "--plot", "piped.png"], "piped.png"),
                       (["predict", "model.npz"], None),
                       (["train", "--epochs", "40", "--out", "piped.npz"], "piped.npz")]:
        proc = subprocess.Popen(command + args, cwd=folder, env=env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        first = proc.stdout.readline()
        proc.stdout.close()                     # the reader goes away, as head does
        returncode = proc.wait(timeout=120)
        stderr = proc.stderr.read().decode()
        proc.stderr.close()
        assert first and returncode == 0, (args, returncode, stderr)
        assert "error" not in stderr and "Traceback" not in stderr, (args, stderr)
        if made:
            assert (folder / made).stat().st_size > 0, args


def test_test_split_holds_out_a_test_set_that_evaluate_finds_again(tmp_path):
    """Data without a test set: --test-split 0.25 trains on 3/4, reports the test accuracy on
    the rest, and evaluate --test-split 0.25 evaluates on that same quarter."""
    X, y = synthetic_images(400, 8, 4)
    np.savez(tmp_path / "only_train.npz", X=X.reshape(400, -1), y=y)
    out = ok(run("train", "--data", "only_train.npz", "--epochs", "2", "--test-split", "0.25",
                 cwd=tmp_path))
    assert "300 training and 100 test images" in out
    assert "evaluate it with: fastmlp evaluate model.npz --data only_train.npz --test-split 0.25" in out
    test_acc = next(line for line in out.splitlines() if line.startswith("test: accuracy")).split()[2]
    evaluated = run("evaluate", "model.npz", "--data", "only_train.npz", "--test-split", "0.25",
                    cwd=tmp_path)
    assert "test set, 100 images" in ok(evaluated)
    assert f"accuracy {test_acc.rstrip(',')}" in evaluated.stdout
    # without it: the training images, said so
    plain = run("evaluate", "model.npz", "--data", "only_train.npz", cwd=tmp_path)
    assert "training set, 400 images" in ok(plain) and "no test set" in plain.stderr
    out = ok(run("train", "--data", "only_train.npz", "--epochs", "1", "--out", "m2.npz",
                 cwd=tmp_path))
    assert "has no test set" in out and "--test-split 0.2" in out


def test_train_takes_fit_options_checkpoint_and_resume(tmp_path):
    """The command line's batch size default is fit's; schedules, full batch, Adam's betas,
    Nesterov, checkpoints and resume reach fit."""
    from fastmlp.cli import build_parser
    import inspect

    assert build_parser().parse_args(["train"]).batch_size == \
        inspect.signature(MLP.fit).parameters["batch_size"].default
    common = ("--epochs", "4", "--lr-schedule", "0:0.2,2:0.05", "--momentum", "0.5", "--nesterov",
              "--seed", "3")
    ok(run("train", *common, "--out", "whole.npz", cwd=tmp_path))
    # a run stopped after 2 epochs (its checkpoint says 4 are planned) resumed to the end
    ok(run("train", *common, "--checkpoint", "run.ckpt.npz", "--out", "first.npz", cwd=tmp_path))
    out = ok(run("train", *common, "--resume", "run.ckpt.npz", "--checkpoint", "run.ckpt.npz",
                 "--out", "resumed.npz", cwd=tmp_path))
    assert "trained 4 epochs" in out
    whole, resumed = MLP.load(tmp_path / "whole.npz"), MLP.load(tmp_path / "resumed.npz")
    assert whole.history_["lr"] == [0.2, 0.2, 0.05, 0.05]
    for (w1, b1), (w2, b2) in zip(whole.params, resumed.params):
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(b1, b2)
    out = ok(run("train", "--epochs", "1", "--batch-size", "full", "--optimizer", "adam",
                 "--beta1", "0.8", "--lr", "0.01", "--no-shuffle", "--out", "full.npz", cwd=tmp_path))
    assert "full batch" in out and "adam" in out


def test_trained_line_counts_a_partial_epoch():
    history = {"epoch": [1, 2], "loss": [0.5, 0.4], "seconds": [1.0, 0.5], "samples": [100, 40]}
    line = cli._trained_line(history, 100)
    assert line.startswith("trained 1 epoch and 40 of 100 samples of epoch 2 in 1.5 s: loss 0.4000")
    assert cli._trained_line(dict(history, samples=[100, 100]), 100).startswith("trained 2 epochs in")


# ---------------------------------------------------------------- Ctrl-C


def test_ctrl_c_during_train_saves_the_model(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((20000, 64), dtype=np.float32)
    np.savez(tmp_path / "big.npz", X=X, y=X[:, :10].argmax(axis=1))
    proc = subprocess.Popen([sys.executable, "-m", "fastmlp", "train", "--data", "big.npz",
                             "--epochs", "1000", "--out", "big_model.npz"], cwd=tmp_path, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    seen = []
    try:
        deadline = time.monotonic() + 120
        while not any(line.startswith("epoch 1 ") for line in seen):
            assert time.monotonic() < deadline, f"no epoch line within 120 s:\n{''.join(seen)}"
            assert proc.poll() is None, f"exited early ({proc.returncode}):\n{''.join(seen)}{proc.stderr.read()}"
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        proc.send_signal(signal.SIGINT)
        returncode = proc.wait(timeout=60)
        stderr = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    while not lines.empty():
        seen.append(lines.get())
    out = "".join(seen)
    assert returncode == 0, f"exit {returncode}\n{out}\n{stderr}"
    assert "Traceback" not in stderr, stderr
    assert "interrupted (Ctrl-C)" in out
    assert "saved the model to big_model.npz" in out
    model = MLP.load(tmp_path / "big_model.npz")
    assert 1 <= len(model.history_["epoch"]) < 1000
    assert all(np.isfinite(t).all() for pair in model.params for t in pair)


# ---------------------------------------------------------------- helpers, in-process


def test_parse_layers():
    assert cli.parse_layers(None, 784, 10) == [784, 128, 10]
    assert cli.parse_layers("784, 256,128,10", 784, 10) == [784, 256, 128, 10]
    for text, message in (("784", "at least the input and output"), ("784,0,10", "at least 1"),
                          ("64,10", "starts with 64"), ("784,9", "ends with 9"), ("a,b", "whole numbers")):
        with pytest.raises(cli.CLIError, match=message):
            cli.parse_layers(text, 784, 10)


def test_render_images_ascii_side_by_side():
    X = np.zeros((3, 16), dtype=np.float32)
    X[:, 5] = 1.0                       # one bright pixel at row 1, column 1 of a 4x4 image
    text = cli.render_images(X, [1, 2, 3], [1, 0, 3], columns=200, ramp=cli.ASCII_RAMP)
    lines = text.split("\n")
    assert len(lines) == 2 + 4          # two title lines, four rows of pixels
    assert lines[0].split() == ["#0", "pred", "1", "#1", "pred", "2", "#2", "pred", "3"]
    assert "WRONG" in lines[1] and lines[1].count("WRONG") == 1
    assert lines[3].count("@@") == 3    # the bright pixel, two characters wide, in each image
    # a narrow terminal wraps to one image per row
    narrow = cli.render_images(X, [1, 2, 3], None, columns=10, ramp=cli.ASCII_RAMP).split("\n")
    assert [line for line in narrow if "pred" in line] == ["#0 pred 1", "#1 pred 2", "#2 pred 3"]


def test_render_image_scales_each_image_to_its_maximum():
    lines = cli.render_image(np.array([[0.0, 0.5], [0.25, 0.5]]), ramp=" .:-=")
    assert lines == ["  ==", "::=="]


def test_train_evaluate_predict_from_a_npy_file_read_from_disk(tmp_path):
    images, y = synthetic_images(300, 8, 4)
    np.save(tmp_path / "train_images.npy", images)
    np.save(tmp_path / "classes.npy", y)
    out = ok(run("train", "--data", "train_images.npy", "--labels", "classes.npy",
                 "--test-split", "0.2", "--epochs", "4", "--shuffle-block", "50", "--out", "m.npz",
                 cwd=tmp_path))
    assert "--labels classes.npy --test-split 0.2" in out
    accuracy = float(out.split("test: accuracy ")[1].split(",")[0])
    assert accuracy > 0.9
    out = ok(run("evaluate", "m.npz", "--data", "train_images.npy", "--labels", "classes.npy",
                 "--test-split", "0.2", cwd=tmp_path))
    assert f"accuracy {accuracy:.4f}" in out and "60 images" in out
    ok(run("predict", "m.npz", "--data", "train_images.npy", "--labels", "classes.npy",
           "--out", "p.csv", "--show", "2", cwd=tmp_path))
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 301
    assert_one_line_error(run("train", "--data", "train_images.npy", cwd=tmp_path),
                          "no labels file found beside it", "train_labels.npy")
    assert_one_line_error(run("train", "--labels", "classes.npy", cwd=tmp_path),
                          "--labels applies to an IDX or .npy images file")


def test_resume_mismatch_advice_reads_as_the_command_line(tmp_path):
    from helpers import blobs

    X, y = blobs(n=30)
    MLP([4, 3, 3]).fit(X, y, epochs=1, checkpoint=tmp_path / "c.npz")
    for kwargs in ({"epochs": 2}, {"epochs": 1, "batch_size": 5}):
        with pytest.raises(cli.CLIError) as info, cli._option_names():
            MLP([4, 3, 3]).fit(X, y, resume=tmp_path / "c.npz", **kwargs)
        assert "call fit" not in str(info.value) and "--" in str(info.value), str(info.value)
    with pytest.raises(cli.CLIError, match="run train without --resume"), cli._option_names():
        MLP([4, 3, 3]).fit(X[::-1], y[::-1], epochs=1, resume=tmp_path / "c.npz")
