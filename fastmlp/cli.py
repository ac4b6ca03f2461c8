"""The ``fastmlp`` command line: train, evaluate, predict, export, info (and bench).

    fastmlp train                                   # built-in 8x8 digits, a few seconds
    fastmlp train --data mnist/ --layers 784,256,10 --epochs 20 --out mnist.npz
    fastmlp evaluate mnist.npz --data mnist/
    fastmlp predict mnist.npz --data mnist/ --show 5
    fastmlp export mnist.npz --onnx mnist.onnx
    fastmlp info

Exit codes: 0 success (also when Ctrl-C stopped training: the model trained so far is saved,
and when standard output was closed early, as by ``| head``: the printout stops, the work and
its files do not),
1 an error (one line on stderr, "fastmlp: error: ..."), 2 bad command-line arguments,
130 aborted by a second Ctrl-C (nothing saved).
"""

import argparse
import difflib
import os
import shlex
import shutil
import sys

import numpy as np

from ._version import __version__
from .info import compile_note, kernels_cached, plan_rows, report_rows
from .flops import parse_model
from .io import write_atomic
from .terminal import (ASCII_RAMP, UNICODE_RAMP, format_confusion, format_per_class,  # noqa: F401
                       render_image, render_images)
from .codes import ACTIVATIONS, DTYPES, ENGINES, INITS, OPTIMIZERS

PROG = "fastmlp"
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_ABORTED = 0, 1, 2, 130
CLASSIFIER_HEADS = ("softmax", "sigmoid")   # the command line trains classifiers only
HIDDEN_WIDTH = 128
DATA_HELP = ("a directory of MNIST IDX files, one IDX images file (.gz or raw), .npz with X and y "
             "(or x_train, y_train, x_test, y_test), .npy images read from disk as needed (for "
             "data larger than memory) with their labels .npy beside them, .csv (label first), "
             "or 'digits'")
LABELS_HELP = ("the labels file of an IDX or .npy images file, when it is not beside it under a "
               "usual name (y.npy for X.npy, NAME_labels.npy, ...)")
# fit / MLP argument names as they appear in library error messages -> command-line options
OPTION_NAMES = {"batch_size": "--batch-size", "lr": "--lr", "epochs": "--epochs",
                "momentum": "--momentum", "weight_decay": "--weight-decay",
                "validation_split": "--val-split", "early_stopping": "--early-stopping",
                "threads": "--threads", "seed": "--seed", "lr_schedule": "--lr-schedule",
                "beta1": "--beta1", "beta2": "--beta2", "checkpoint_every": "--checkpoint-every",
                "checkpoint": "--checkpoint", "resume": "--resume",
                "shuffle_block": "--shuffle-block"}
COMMANDS = "train, evaluate, predict, export, info or bench"
SCHEDULE_NAMES = ("invscaling", "cosine")
PREDICTION_FORMATS = ("csv", "kaggle")


class CLIError(Exception):
    """A problem to report as one line on stderr, with exit code 1."""


# ---------------------------------------------------------------- entry point

def main(argv=None):
    """Run the command line with ``argv`` (default: sys.argv[1:]); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error(f"choose a command: {COMMANDS}")
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)   # epoch lines show up at once in pipes too
    stdout = sys.stdout
    sys.stdout = _ClosedPipeGuard(stdout)
    try:
        return args.handler(args) or EXIT_OK
    except KeyboardInterrupt:
        print(f"{PROG}: aborted (Ctrl-C)", file=sys.stderr)
        return EXIT_ABORTED
    except (CLIError, ValueError, TypeError, OSError, ImportError, FloatingPointError) as exc:
        print(f"{PROG}: error: {_message(exc)}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        sys.stdout = stdout


class _ClosedPipeGuard:
    """Standard output that stops printing, quietly, when its reader has gone (``| head``),
    while the command goes on to finish its work and write its files."""

    def __init__(self, stream):
        self._stream = stream

    def _closed(self):
        # Later writes, and Python's flush at exit, go to /dev/null instead of failing again.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):       # no file descriptor (a StringIO in tests)
            pass

    def write(self, text):
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._closed()
            return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._closed()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _message(exc):
    """One line describing ``exc``."""
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


# ---------------------------------------------------------------- argument parsing

class _Parser(argparse.ArgumentParser):
    """Usage errors as one line: "fastmlp: error: ... (see 'fastmlp train --help')"."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=30, width=min(100, shutil.get_terminal_size().columns))


def _wrap(text):
    """A paragraph wrapped to the terminal (the raw formatter keeps the examples' lines)."""
    import textwrap

    return textwrap.fill(text, width=min(100, shutil.get_terminal_size().columns) - 2)


def _int_at_least(low):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    return parse


def _float_in(low, high=None, low_open=False):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not np.isfinite(value) or (value <= low if low_open else value < low) or \
                (high is not None and value >= high):
            where = (f"{'above' if low_open else 'at least'} {low:g}"
                     + ("" if high is None else f" and below {high:g}"))
            raise argparse.ArgumentTypeError(f"must be {where}, got {text}")
        return value
    return parse


def _choice(table):
    def parse(text):
        if text in table:
            return text
        close = difflib.get_close_matches(text, table, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(table)}{hint}")
    return parse


def _fit_default(name):
    """The default of ``MLP.fit``'s argument ``name``: the command line uses the same."""
    import inspect

    from .model import MLP

    return inspect.signature(MLP.fit).parameters[name].default


def _model(text):
    """--model: layer widths such as 784-128-10."""
    try:
        return parse_model(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _batch_size(text):
    """--batch-size: a whole number >= 1, or 'full' (None: the whole data in each step)."""
    return None if text.strip().lower() == "full" else _int_at_least(1)(text)


def _schedule(text):
    """--lr-schedule: a built-in name, or FIRST_EPOCH:LR pairs as a {first_epoch: lr} table."""
    if text in SCHEDULE_NAMES:
        return text
    table = {}
    for pair in text.replace(" ", "").split(","):
        epoch, _, lr = pair.partition(":")
        try:
            table[int(epoch)] = float(lr)
        except ValueError:
            close = difflib.get_close_matches(text, SCHEDULE_NAMES, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise argparse.ArgumentTypeError(
                f"{text!r}: {hint}give {' or '.join(SCHEDULE_NAMES)}, or FIRST_EPOCH:LR pairs "
                f"such as 0:0.5,30:0.1") from None
    return table


def build_parser():
    parser = _Parser(
        prog=PROG, formatter_class=_Formatter,
        description=_wrap("Train multi-layer perceptrons on the CPU with Numba-compiled kernels."),
        epilog="examples:\n"
               "  fastmlp train                          # built-in 8x8 digits, a few seconds\n"
               "  fastmlp train --data mnist/ --layers 784,256,10 --epochs 20 --out mnist.npz\n"
               "  fastmlp evaluate mnist.npz --data mnist/ --plot confusion.png\n"
               "  fastmlp predict mnist.npz --data mnist/ --show 5\n\n"
               "'fastmlp COMMAND --help' describes each command.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    _add_train(commands)
    _add_evaluate(commands)
    _add_predict(commands)
    _add_export(commands)
    info = commands.add_parser(
        "info", help="versions, cores, threads, BLAS and the Numba cache",
        formatter_class=_Formatter,
        description=_wrap("Show the versions of fastmlp, Python, NumPy and Numba, the cores and Numba "
                    "threads available, Numba's threading layer, the BLAS the compiled engine "
                    "calls, and where Numba caches compiled kernels; with --model, the thread "
                    "plan of that model's training and inference calls and why."))
    info.add_argument("--model", type=_model, metavar="LAYERS",
                      help="show the plan for this model, e.g. 784-128-10")
    info.add_argument("--batch-size", type=_batch_size, default=_fit_default("batch_size"),
                      help="with --model: rows per minibatch, or 'full'")
    info.add_argument("--rows", type=_int_at_least(1), default=60000,
                      help="with --model: rows of data (an epoch is planned as one call)")
    info.add_argument("--threads", type=_int_at_least(1), metavar="N",
                      help="with --model: at most this many threads (default: all cores)")
    info.set_defaults(handler=cmd_info)
    from .bench import add_subcommand as _add_bench   # `fastmlp bench`: options in fastmlp/bench.py
    _add_bench(commands, _Formatter)
    return parser


def _add_train(commands):
    p = commands.add_parser(
        "train", help="train a model and save it", formatter_class=_Formatter,
        description=_wrap("Train an MLP classifier and save it. Without arguments it trains on the "
                    "built-in 8x8 digits in a few seconds. Prints a line per epoch (and a "
                    "progress bar on a terminal), the test accuracy when the data has a test "
                    "set, and where the model was saved. Ctrl-C stops after the current slice "
                    "of batches and still saves the model (exit code 0); a second Ctrl-C aborts."),
        epilog="examples:\n"
               "  fastmlp train\n"
               "  fastmlp train --data mnist/ --layers 784,256,128,10 --optimizer adam --lr 0.001\n"
               "  fastmlp train --data train.csv --val-split 0.1 --early-stopping 3 --plot curves.png")
    data = p.add_argument_group("data and model")
    data.add_argument("--data", metavar="PATH",
                      help=f"training data: {DATA_HELP} (default: the built-in digits, "
                           f"which need scikit-learn)")
    data.add_argument("--labels", metavar="PATH", help=LABELS_HELP)
    data.add_argument("--layers", metavar="WIDTHS",
                      help="comma-separated layer widths from input to output, e.g. 784,128,10; "
                           "the first must be the data's features per image, the last its number "
                           f"of classes (default: FEATURES,{HIDDEN_WIDTH},CLASSES from the data)")
    data.add_argument("--test-split", type=_float_in(0, 1, low_open=True), metavar="FRACTION",
                      help="hold out this fraction of data that has no test set of its own as "
                           "the test set (stratified, seed 0); give the same to evaluate and "
                           "predict")
    data.add_argument("--activation", default="relu", type=_choice(ACTIVATIONS),
                      metavar="{" + ",".join(ACTIVATIONS) + "}",
                      help="hidden-layer activation (default: %(default)s)")
    data.add_argument("--output", default="softmax", type=_choice(CLASSIFIER_HEADS),
                      metavar="{" + ",".join(CLASSIFIER_HEADS) + "}",
                      help="output head: softmax + cross-entropy, or sigmoid + squared error "
                           "(default: %(default)s)")
    data.add_argument("--init", default="he", type=_choice(INITS),
                      metavar="{" + ",".join(INITS) + "}",
                      help="initial weights (default: %(default)s)")
    opt = p.add_argument_group("training")
    opt.add_argument("--epochs", type=_int_at_least(1), default=10,
                     help="passes over the training data (default: %(default)s)")
    opt.add_argument("--batch-size", type=_batch_size, default=_fit_default("batch_size"),
                     metavar="N",
                     help="samples per minibatch, or 'full' for full-batch gradient descent "
                          "(default: %(default)s)")
    opt.add_argument("--lr", type=_float_in(0, low_open=True), default=0.1,
                     help="learning rate (default: %(default)s; try 0.001 with adam)")
    opt.add_argument("--optimizer", default="sgd", type=_choice(OPTIMIZERS),
                     metavar="{" + ",".join(OPTIMIZERS) + "}",
                     help="minibatch SGD or Adam (default: %(default)s)")
    opt.add_argument("--momentum", type=_float_in(0, 1), default=0.0,
                     help="SGD momentum, 0 <= m < 1 (default: %(default)s)")
    opt.add_argument("--nesterov", action="store_true", help="Nesterov momentum (with --momentum)")
    opt.add_argument("--beta1", type=_float_in(0, 1), default=0.9,
                     help="Adam's first-moment decay (default: %(default)s)")
    opt.add_argument("--beta2", type=_float_in(0, 1), default=0.999,
                     help="Adam's second-moment decay (default: %(default)s)")
    opt.add_argument("--lr-schedule", type=_schedule, metavar="SCHEDULE",
                     help="learning rate per epoch: invscaling, cosine, or a table of "
                          "FIRST_EPOCH:LR pairs such as 0:0.5,30:0.1,60:0.01 (epochs from 0; "
                          "default: --lr throughout)")
    opt.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                     help="take the minibatches in the data's order every epoch")
    opt.add_argument("--shuffle-block", type=_int_at_least(1), metavar="ROWS",
                     help="shuffle by blocks of this many consecutive rows (blocks in a random "
                          "order, rows within each block shuffled): for a .npy file larger than "
                          "memory, read block by block instead of at random")
    opt.add_argument("--replacement", action="store_true",
                     help="draw each epoch's samples with replacement")
    opt.add_argument("--weight-decay", type=_float_in(0), default=0.0, metavar="L2",
                     help="L2 penalty on the weights (default: %(default)s)")
    opt.add_argument("--val-split", type=_float_in(0, 1), default=None, metavar="FRACTION",
                     help="hold out this fraction of the training data to report val_loss and "
                          "val_accuracy each epoch (default: none, or 0.1 with --early-stopping)")
    opt.add_argument("--early-stopping", type=_int_at_least(1), metavar="PATIENCE",
                     help="stop when the validation loss has not improved for PATIENCE epochs "
                          "and keep the best weights")
    opt.add_argument("--seed", type=_int_at_least(0), default=0,
                     help="seed for the initial weights, shuffling and the validation split "
                          "(default: %(default)s)")
    opt.add_argument("--checkpoint", metavar="PATH",
                     help="write a checkpoint (weights, optimizer state, history) to PATH every "
                          "--checkpoint-every epochs and at the end")
    opt.add_argument("--checkpoint-every", type=_int_at_least(1), metavar="N",
                     help="epochs between checkpoints (default: 1)")
    opt.add_argument("--resume", metavar="PATH",
                     help="continue the run of this checkpoint: give the same data and options; "
                          "it trains the epochs left of --epochs")
    run = p.add_argument_group("engine")
    run.add_argument("--threads", type=_int_at_least(1), metavar="N",
                     help="threads to use (default: all cores available)")
    run.add_argument("--engine", default="numba", type=_choice(ENGINES),
                     metavar="{" + ",".join(ENGINES) + "}",
                     help="compiled Numba kernels or the pure-NumPy reference "
                          "(default: %(default)s)")
    run.add_argument("--dtype", default="float32", type=_choice(DTYPES),
                     metavar="{" + ",".join(DTYPES) + "}",
                     help="floating-point type of weights and data (default: %(default)s)")
    out = p.add_argument_group("output")
    out.add_argument("--out", default="model.npz", metavar="PATH",
                     help="where to save the model (default: %(default)s)")
    out.add_argument("--plot", metavar="PNG",
                     help="save learning curves (loss and accuracy per epoch) to this image; "
                          'needs matplotlib: pip install "fastmlp[plot]"')
    out.add_argument("--quiet", "-q", action="store_true",
                     help="no progress bar and no per-epoch lines; only the results")
    p.set_defaults(handler=cmd_train)


def _add_split_and_data(p):
    p.add_argument("model", metavar="MODEL", help="a model file written by 'fastmlp train'")
    p.add_argument("--data", metavar="PATH", help=f"{DATA_HELP} (default: the built-in digits)")
    p.add_argument("--labels", metavar="PATH", help=LABELS_HELP)
    p.add_argument("--split", choices=("auto", "test", "train"), default="auto",
                   help="which part of the data to use; auto: the test set when the data has "
                        "one, else the training set (default: %(default)s)")
    p.add_argument("--test-split", type=_float_in(0, 1, low_open=True), metavar="FRACTION",
                   help="the test set the model was trained without: the --test-split given "
                        "to train, for data that has no test set of its own")


def _add_evaluate(commands):
    p = commands.add_parser(
        "evaluate", help="loss, accuracy and confusion matrix of a saved model",
        formatter_class=_Formatter,
        description=_wrap("Evaluate a saved model on labelled data: loss, accuracy, accuracy per class "
                    "and the confusion matrix (rows: true class, columns: predicted class)."),
        epilog="example:\n  fastmlp evaluate model.npz --data mnist/ --plot confusion.png")
    _add_split_and_data(p)
    p.add_argument("--plot", metavar="PNG",
                   help='also save the confusion matrix as an image (needs matplotlib: '
                        'pip install "fastmlp[plot]")')
    p.set_defaults(handler=cmd_evaluate)


def _add_predict(commands):
    p = commands.add_parser(
        "predict", help="predicted labels of a saved model, as CSV or pictures",
        formatter_class=_Formatter,
        description=_wrap("Predict a label for each image. The predictions are written as CSV "
                    "(index,prediction and, when the data has labels, label) to --out, or to "
                    "standard output unless --show is given. --show N draws the first N images "
                    "with prediction and truth in the terminal, or into an image with --show-out."),
        epilog="examples:\n"
               "  fastmlp predict model.npz --data test.csv --out predictions.csv\n"
               "  fastmlp predict model.npz --show 6\n"
               "  fastmlp predict model.npz --data mnist/ --show 32 --show-out predictions.png")
    _add_split_and_data(p)
    p.add_argument("--out", metavar="CSV", help="write the predictions to this CSV file")
    p.add_argument("--format", choices=PREDICTION_FORMATS, default="csv",
                   help="csv: index,prediction[,label] from index 0; kaggle: ImageId,Label "
                        "from ImageId 1, a Kaggle digit-recognizer submission "
                        "(default: %(default)s)")
    p.add_argument("--show", type=_int_at_least(1), metavar="N",
                   help="draw the first N images with their predicted and true labels")
    p.add_argument("--show-out", metavar="PNG",
                   help='draw them into this image instead of the terminal (needs matplotlib: '
                        'pip install "fastmlp[plot]")')
    p.set_defaults(handler=cmd_predict)


def _add_export(commands):
    p = commands.add_parser(
        "export", help="write a saved model as an ONNX graph", formatter_class=_Formatter,
        description=_wrap("Write a model saved by 'fastmlp train' (or MLP.save) as an ONNX graph "
                          "for onnxruntime and other ONNX runtimes: input X (batch, features); "
                          "outputs probabilities and label for classifiers, predictions for "
                          "regression. Needs the onnx package: pip install \"fastmlp[onnx]\"."),
        epilog="example:\n  fastmlp export model.npz --onnx model.onnx")
    p.add_argument("model", metavar="MODEL", help="a model file written by 'fastmlp train'")
    p.add_argument("--onnx", metavar="PATH", required=True, help="where to write the ONNX file")
    p.set_defaults(handler=cmd_export)


# ---------------------------------------------------------------- train

def cmd_train(args):
    from .model import MLP

    _check_output_path(args.out, "--out", _inputs(args))
    if args.plot:
        from .plots import require_matplotlib

        require_matplotlib()
        _check_output_path(args.plot, "--plot", _inputs(args))
    val_split = args.val_split
    if args.early_stopping is not None:
        if val_split == 0:
            raise CLIError("--early-stopping needs a validation set; give --val-split above 0 "
                           "(e.g. 0.1) or leave it out")
        val_split = 0.1 if val_split is None else val_split
    val_split = val_split or 0.0

    data = _load_data(args)
    if data.y_train is None:
        raise CLIError(f"{data.source}: has no labels; training needs a label for every image")
    n_features, n_classes = data.X_train.shape[1], _n_classes(data)
    layers = parse_layers(args.layers, n_features, n_classes, data.name)
    verbose = 0 if args.quiet else (1 if sys.stderr.isatty() else 2)

    with _option_names():
        model = MLP(layers, activation=args.activation, output=args.output, init=args.init,
                    dtype=args.dtype, seed=args.seed, engine=args.engine, threads=args.threads)
    if not args.quiet:
        n_test = 0 if data.X_test is None else len(data.X_test)
        print(f"data: {data.name} ({data.source}): {len(data.X_train)} training and {n_test} "
              f"test images of {n_features} features, {n_classes} classes")
        print(f"model: layers {','.join(map(str, layers))}, {args.activation} + {args.output}, "
              f"{model.n_params:,} parameters, {args.dtype}, engine {args.engine}")
        extra = "".join(f", {name} {value:g}" for name, value in
                        (("momentum", args.momentum), ("weight decay", args.weight_decay),
                         ("validation split", val_split)) if value)
        batch = "full batch" if args.batch_size is None else f"batch size {args.batch_size}"
        print(f"training: {args.epochs} epochs, {args.optimizer}, {_describe_lr(args)}, {batch}{extra}"
              + (f", early stopping after {args.early_stopping}" if args.early_stopping else ""))
        if data.X_test is None:
            print(f"note: {data.source} has no test set, so none is reported; hold one out "
                  f"with --test-split 0.2")
    if not args.quiet and args.engine == "numba" and kernels_cached() is False:
        print(compile_note())
    with _option_names():
        history = model.fit(data.X_train, data.y_train, epochs=args.epochs,
                            batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                            momentum=args.momentum, nesterov=args.nesterov, beta1=args.beta1,
                            beta2=args.beta2, weight_decay=args.weight_decay,
                            lr_schedule=args.lr_schedule, shuffle=args.shuffle,
                            shuffle_block=args.shuffle_block,
                            replacement=args.replacement, validation_split=val_split,
                            early_stopping=args.early_stopping, verbose=verbose,
                            checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
                            resume=args.resume)
    interrupted = bool(getattr(model, "interrupted_", False))
    model.save(args.out)        # first, so that nothing later can lose the trained weights

    if args.plot:     # files first: printing can fail (a closed pipe), writing must not wait
        from .plots import plot_history

        plot_history(history, args.plot, title=f"{data.name}: layers {','.join(map(str, layers))}")

    print(_trained_line(history, model.epoch_samples_))
    if interrupted:
        print(f"interrupted (Ctrl-C) during epoch {len(history.get('epoch', []))} of "
              f"{args.epochs}; saved the weights of the last completed step")
    if data.X_test is not None and data.y_test is not None:
        result = model.evaluate(data.X_test, data.y_test)
        print(f"test: accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f} "
              f"({len(data.X_test)} images)")
    evaluate = f"{PROG} evaluate {shlex.quote(args.out)}" + (
        f" --data {shlex.quote(args.data)}" if args.data else "") + (
        f" --labels {shlex.quote(args.labels)}" if args.labels else "") + (
        f" --test-split {args.test_split:g}" if args.test_split else "")
    print(f"saved the model to {args.out} (evaluate it with: {evaluate})")
    if args.plot:
        print(f"saved learning curves to {args.plot}")
    return EXIT_OK


def _trained_line(history, n_train):
    """'trained 3 epochs in 1.2 s: loss ...', a partial last epoch (Ctrl-C) counted as such."""
    epochs = len(history.get("epoch", []))
    samples = history.get("samples", [])
    partial = bool(samples) and samples[-1] < n_train
    whole = epochs - partial
    text = f"trained {whole} epoch{'s' * (whole != 1)}"
    if partial:
        text += f" and {samples[-1]:,} of {n_train:,} samples of epoch {epochs}"
    summary = ", ".join(f"{key.replace('_', ' ')} {history[key][-1]:.4f}"
                        for key in ("loss", "accuracy", "val_loss", "val_accuracy") if history.get(key))
    return (text + f" in {sum(history.get('seconds', [])):.1f} s"
            + (f": {summary}" if summary else ""))


def _describe_lr(args):
    """'lr 0.1', 'lr 0.1, cosine schedule' or 'lr 0.5 from epoch 0, 0.1 from epoch 30'."""
    if isinstance(args.lr_schedule, dict):
        return "lr " + ", ".join(f"{lr:g} from epoch {e}" for e, lr in sorted(args.lr_schedule.items()))
    return f"lr {args.lr:g}" + (f", {args.lr_schedule} schedule" if args.lr_schedule else "")


def _load_data(args):
    """The data of --data, with --test-split held out when the data has no test set."""
    from .data import DataError, load

    try:
        return load(args.data, labels=getattr(args, "labels", None),
                    split=getattr(args, "test_split", None))
    except DataError:
        raise
    except ValueError as exc:       # load's labels= refused: say it as this command's option
        raise CLIError(str(exc).replace("labels=", "--labels")) from None


def parse_layers(text, n_features, n_classes, data_name="the data"):
    """Layer widths from "784,128,10", checked against the data; the default when ``text`` is None."""
    if text is None:
        return [n_features, HIDDEN_WIDTH, n_classes]
    example = f"--layers {n_features},{HIDDEN_WIDTH},{n_classes}"
    try:
        layers = [int(part) for part in text.replace(" ", "").split(",")]
    except ValueError:
        raise CLIError(f"--layers {text!r}: give comma-separated whole numbers, e.g. {example}") from None
    if len(layers) < 2:
        raise CLIError(f"--layers {text!r}: give at least the input and output widths, e.g. {example}")
    if min(layers) < 1:
        raise CLIError(f"--layers {text!r}: every width must be at least 1, e.g. {example}")
    if layers[0] != n_features:
        raise CLIError(f"--layers starts with {layers[0]} but the {data_name} images have "
                       f"{n_features} features; start with {n_features}, e.g. {example}")
    if layers[-1] != n_classes:
        raise CLIError(f"--layers ends with {layers[-1]} but {data_name} has {n_classes} classes "
                       f"(labels 0..{n_classes - 1}); end with {n_classes}, e.g. {example}")
    return layers


def _n_classes(data):
    """Output units for the data's class numbers 0..max. Numbers far above the count of
    distinct classes are ids, not class numbers: refused rather than training a huge layer."""
    labels = [y for y in (data.y_train, data.y_test) if y is not None and len(y)]
    if not labels:
        return 1
    top = max(int(y.max()) for y in labels)
    distinct = len(np.unique(np.concatenate(labels)))
    if top + 1 > max(2 * distinct, 100):
        raise CLIError(f"{data.name}: the labels run up to {top} but only {distinct} distinct "
                       f"classes appear; number the classes 0..{distinct - 1} (the model would "
                       f"get one output unit per number up to {top}).")
    return top + 1


class _option_names:
    """Re-raise the library's ValueError / TypeError with argument names as options
    (batch_size -> --batch-size)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None or not issubclass(kind, (ValueError, TypeError)) or isinstance(exc, CLIError):
            return False
        import re

        text = re.sub(r"\b(" + "|".join(OPTION_NAMES) + r")\b(?=[=<> ])",
                      lambda m: OPTION_NAMES[m.group(1)], _message(exc))
        text = text.replace(" or None for full batch", "")     # no such value on the command line
        # a resumed run's advice for Python, as the command line has it
        text = text.replace(" (to train further afterwards, call fit again)", "")
        text = text.replace("call fit without --resume=", "run train without --resume")
        raise CLIError(text) from None


def _check_output_path(path, option, inputs=()):
    """Fail before any work when ``path`` cannot be written or is one of ``inputs``."""
    from .io import check_writable

    try:
        check_writable(path, option, inputs)
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from None


def _inputs(args):
    """The files this command reads: its data (the files of a data directory), labels, model."""
    found = []
    for name in ("data", "labels", "model", "resume"):
        path = getattr(args, name, None)
        if path and os.path.isdir(path):
            found += [os.path.join(path, f) for f in os.listdir(path)]
        elif path:
            found.append(path)
    return found


# ---------------------------------------------------------------- evaluate and predict

def _load_model(path):
    from .model import MLP

    try:
        return MLP.load(path)
    except FileNotFoundError:
        raise CLIError(f"no model file at {path}; train one with: {PROG} train --out "
                       f"{shlex.quote(str(path))}") from None


def _pick(data, split):
    """(X, y or None, name of the part) of the data for --split."""
    if split == "test" or (split == "auto" and data.X_test is not None):
        if data.X_test is None:
            raise CLIError(f"{data.source} has no test set; use --split train")
        return data.X_test, data.y_test, "test"
    return data.X_train, data.y_train, "training"


def _load_for(model, model_path, args):
    data = _load_data(args)
    X, y, part = _pick(data, args.split)
    if part == "training" and args.split == "auto":
        print(f"note: {data.source} has no test set: these are the images the model may have "
              f"been trained on; give train's --test-split to hold the same test set out",
              file=sys.stderr)
    if X.shape[1] != model.layers[0]:
        raise CLIError(f"{model_path} takes images of {model.layers[0]} features but "
                       f"{data.source} has {X.shape[1]}; use data like the model was trained on")
    return data, X, y, part


def cmd_evaluate(args):
    from .plots import confusion_matrix

    if args.plot:
        from .plots import require_matplotlib

        require_matplotlib()
        _check_output_path(args.plot, "--plot", _inputs(args))
    model = _load_model(args.model)
    data, X, y, part = _load_for(model, args.model, args)
    if y is None:
        raise CLIError(f"{data.source} has no labels to evaluate against; "
                       f"use '{PROG} predict' for predictions only")
    result = model.evaluate(X, y)
    if not model.is_classifier:
        print(f"{args.model} on {data.name} ({part} set, {len(X)} images)")
        print(f"loss {result['loss']:.4f}, R^2 {model.score(X, y):.4f}")
        return EXIT_OK
    pred = model.predict(X)
    classes = model.classes_ if model.classes_ is not None else np.unique(np.concatenate([y, pred]))
    matrix = confusion_matrix(y, pred, classes)
    if args.plot:     # files first: printing can fail (a closed pipe), writing must not wait
        from .plots import plot_confusion

        plot_confusion(matrix, classes, args.plot, title=f"{data.name} ({part} set)")
    print(f"{args.model} on {data.name} ({part} set, {len(X)} images)")
    print(f"loss {result['loss']:.4f}, accuracy {result['accuracy']:.4f}\n")
    print(format_per_class(matrix, classes))
    print()
    print(format_confusion(matrix, classes))
    if args.plot:
        print(f"\nsaved the confusion matrix to {args.plot}")
    return EXIT_OK


def cmd_predict(args):
    if args.show_out:
        if not args.show:
            raise CLIError("--show-out needs --show N: how many images to draw")
        from .plots import require_matplotlib

        require_matplotlib()
        _check_output_path(args.show_out, "--show-out", _inputs(args))
    if args.out:
        _check_output_path(args.out, "--out", _inputs(args))
    model = _load_model(args.model)
    data, X, y, part = _load_for(model, args.model, args)
    pred = model.predict(X)
    to_stdout = not args.out and not args.show
    note = sys.stderr if to_stdout else sys.stdout     # keep stdout clean for the CSV
    n_show = min(args.show or 0, len(X))
    truth = None if y is None else y[:n_show]
    if args.out:      # files first: printing can fail (a closed pipe), writing must not wait
        write_atomic(args.out, lambda file: write_predictions(file, pred, y, args.format),
                     binary=False)
    if args.show_out:
        from .plots import plot_images

        plot_images(X[:n_show], truth, pred[:n_show], args.show_out)
    if args.out:
        print(f"wrote {len(pred)} predictions ({data.name}, {part} set) to {args.out}", file=note)
    elif to_stdout:
        write_predictions(sys.stdout, pred, y, args.format)
    if y is not None and model.is_classifier:
        print(f"accuracy {np.mean(pred == y):.4f} ({len(y)} images)", file=note)
    if args.show_out:
        print(f"saved {n_show} images with their predictions to {args.show_out}")
    elif args.show:
        print(render_images(X[:n_show], pred[:n_show], truth))
    return EXIT_OK


def write_predictions(file, pred, y=None, form="csv"):
    """CSV, one line per image: index,prediction[,label] from 0 (``form="csv"``), or Kaggle's
    ImageId,Label from 1 (``form="kaggle"``, without the true labels)."""
    if form == "kaggle":
        file.write("ImageId,Label\n")
        file.writelines(f"{i},{p}\n" for i, p in enumerate(pred.tolist(), start=1))
        return
    file.write("index,prediction" + (",label" if y is not None else "") + "\n")
    if y is None:
        file.writelines(f"{i},{p}\n" for i, p in enumerate(pred.tolist()))
    else:
        file.writelines(f"{i},{p},{t}\n" for i, (p, t) in enumerate(zip(pred.tolist(), y.tolist())))


# ---------------------------------------------------------------- export

def cmd_export(args):
    from .export import OPSET, require_onnx

    require_onnx()
    _check_output_path(args.onnx, "--onnx", [args.model])
    model = _load_model(args.model)
    model.to_onnx(args.onnx)
    model.summary()
    print(f"wrote {args.onnx} (ONNX opset {OPSET}): input X (batch, {model.layers[0]}), outputs "
          + ("probabilities, label" if model.is_classifier else "predictions"))
    return EXIT_OK


# ---------------------------------------------------------------- info

def cmd_info(args):
    rows = report_rows()
    if args.model is not None:
        rows += plan_rows(args.model, args.batch_size or args.rows, args.rows, args.threads)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return EXIT_OK
