"""Compiling the engine's kernels in a background process, so that a first fit starts at once.

A fresh install has an empty Numba cache, and compiling one of the engine's kernels takes seconds.
In the default mode, ``FASTMLP_COMPILE=background``, a compiled call whose kernel is neither in
memory nor in the cache does not compile it: :func:`attempt` reports the call as not run, the
engine runs the NumPy reference (:mod:`fastmlp.reference`, the same math) instead, and a child
process compiles the kernel for exactly that signature into the shared cache. Calls from then
on load it from the cache and run compiled; the engine says which one ran (``Stats.engine``,
``fit``'s history key "engine"). A warm cache is never affected: a kernel found in the cache
is loaded and run, as before. ``FASTMLP_COMPILE=wait`` compiles in the calling process, so
every call runs compiled, bit for bit the same whether or not the cache was warm.

How a call is kept from compiling: Numba announces every compilation with a "numba:compile"
event after looking in memory and in the cache, and before compiling; a listener, armed by
:func:`attempt` for the duration of a call, raises :class:`NotCompiled` there for the kernels
the call may start with (the engine's entry kernels), so the call stops before any of its code
has run. POSIX only; elsewhere every call compiles first.

The child (:func:`serve`) reads one JSON request a line: the kernel (module and attribute) and
its argument types (see :func:`encode_type`), compiles it, answers with the request's number,
and exits when its input closes: when the parent has nothing pending or has exited (so the
cache is warm for the next run). A request the child could not serve (it failed or ended) is
compiled in the calling process on the next call, as in the "wait" mode.
"""

import importlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from numba.core import event, types
from numba.np.numpy_support import from_dtype

MODE_VARIABLE = "FASTMLP_COMPILE"
MODES = ("background", "wait")
# after a call found its kernel compiling, its site goes straight to the NumPy reference for
# this long before it looks in the cache again (docs/performance.md, "RETRY_SECONDS")
RETRY_SECONDS = 0.2

log = logging.getLogger("fastmlp")


def mode():
    """The compile mode in force: "wait" inside :func:`waiting`, else ``FASTMLP_COMPILE``:
    "background" (the default) or "wait"."""
    if _WAITING:
        return "wait"
    value = os.environ.get(MODE_VARIABLE, "").strip().lower() or "background"
    if value not in MODES:
        raise ValueError(f"{MODE_VARIABLE}={value!r} is not a compile mode; use 'background' "
                         f"(train on the NumPy reference while the kernels compile) or 'wait'.")
    return value


_WAITING = []      # one entry per waiting() block open, in any thread


@contextmanager
def waiting():
    """Compile in the calling process for the block's duration (in every thread), as
    ``FASTMLP_COMPILE=wait`` does: for code that times the compiled engine. Also a decorator."""
    _WAITING.append(None)
    try:
        yield
    finally:
        _WAITING.pop()


class NotCompiled(Exception):
    """The call's kernel is being compiled in the background; nothing of the call has run."""

    def __init__(self, kernel, sig):
        super().__init__(f"{kernel.py_func.__qualname__}{sig} is being compiled in the background")
        self.kernel, self.sig = kernel, sig


def attempt(site, call, kernels, request=True):
    """Run ``call()`` (which calls one of the compiled ``kernels``); returns (True, its result),
    or (False, None) when its kernel is being compiled in the background and nothing ran.
    ``site``: the caller's name, for :data:`RETRY_SECONDS`. With ``request=False`` a kernel
    missing from memory and cache is neither compiled nor requested, in any mode: (False, None)
    (for calls that are only worth making when they are ready: a thread count tried). Calls run
    one at a time (under the engine's lock,
    :func:`~fastmlp.engine.lowlevel.threads.thread_limits`)."""
    global _ARMED
    if request and (mode() == "wait" or os.name != "posix"):    # the child's pipes need POSIX
        return True, call()
    if _COMPILER.retry_at.get(site, 0.0) > time.monotonic():
        return False, None
    _ARMED = (kernels, request)
    try:
        return True, call()
    except NotCompiled:
        _COMPILER.retry_at[site] = time.monotonic() + RETRY_SECONDS
        return False, None
    finally:
        _ARMED = None


def wait(timeout=None):
    """Wait until the kernels requested from the background compiler are in the cache (or it
    failed); returns True when nothing is pending. For tests and benchmarks."""
    return _COMPILER.wait(timeout)


def pending():
    """How many kernels are being compiled in the background for this process."""
    with _COMPILER.lock:
        _COMPILER.poll()
        return len(_COMPILER.pending)


_ARMED = None      # (the kernels the call in progress in attempt() must not compile, request)


class _Refuse(event.Listener):
    """Stops the compilation of one of the kernels armed by :func:`attempt` when the background
    compiler takes it (registered once: a listener costs nothing until Numba compiles)."""

    def on_start(self, ev):
        armed = _ARMED
        if armed is None:
            return
        kernel, sig = ev.data["dispatcher"], tuple(ev.data["args"])
        kernels, request = armed
        if kernel in kernels and (not request or _COMPILER.takes(kernel, sig)):
            raise NotCompiled(kernel, sig)

    def on_end(self, ev):
        pass


event.register("numba:compile", _Refuse())


# ---------------------------------------------------------------- argument types as JSON

def encode_type(t):
    """A Numba argument type as JSON-able lists: arrays, scalars and (named) tuples of them, the
    types the engine's kernels take. Raises TypeError for anything else."""
    if isinstance(t, types.Array):
        return ["array", np.dtype(str(t.dtype)).name, t.ndim, t.layout, not t.mutable, t.aligned]
    if isinstance(t, (types.Integer, types.Float, types.Boolean)):
        return ["scalar", np.dtype(str(t) if str(t) != "bool" else "bool").name]
    if isinstance(t, types.BaseTuple):
        cls = getattr(t, "instance_class", tuple)
        named = None if cls is tuple else f"{cls.__module__}:{cls.__qualname__}"
        if named is not None and not named.startswith("fastmlp."):
            raise TypeError(f"a named tuple of another package: {named}")
        return ["tuple", named, [encode_type(e) for e in t.types]]
    raise TypeError(f"no JSON form for the Numba type {t}")


def decode_type(d):
    """The Numba type of :func:`encode_type`'s ``d``."""
    kind = d[0]
    if kind == "array":
        _, dtype, ndim, layout, readonly, aligned = d
        return types.Array(from_dtype(np.dtype(dtype)), int(ndim), layout, readonly=readonly,
                           aligned=aligned)
    if kind == "scalar":
        return from_dtype(np.dtype(d[1]))
    if kind == "tuple":
        cls = tuple if d[1] is None else _fastmlp_attribute(d[1])
        return types.BaseTuple.from_types([decode_type(e) for e in d[2]], cls)
    raise ValueError(f"unknown type form {kind!r}")


def _fastmlp_attribute(name):
    """The object named "module:qualname", from fastmlp's own modules only."""
    module, _, qualname = name.partition(":")
    if module != "fastmlp" and not module.startswith("fastmlp."):
        raise ValueError(f"{name!r} is not part of fastmlp")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _kernel_name(kernel):
    """"module:attribute" under which ``kernel`` (a Numba dispatcher) is found."""
    module = sys.modules[kernel.py_func.__module__]
    for attribute, value in vars(module).items():
        if value is kernel:
            return f"{module.__name__}:{attribute}"
    raise TypeError(f"{kernel} is not an attribute of its module")


def request_line(number, kernel, sig):
    """The JSON line asking the child to compile ``kernel`` for ``sig`` (TypeError when a type
    has no JSON form)."""
    return json.dumps({"id": number, "kernel": _kernel_name(kernel),
                       "sig": [encode_type(t) for t in sig]})


# ---------------------------------------------------------------- the child process

# the child ends when no request has come for this long (a parent that lives on, such as a
# notebook, starts another when it needs one)
IDLE_SECONDS = 60


def serve(lines=None, answer=None, package=None):
    """The child's loop: compile each requested kernel (into the cache: they are all
    ``cache=True``), answer with its request number; return at the end of the input or after
    :data:`IDLE_SECONDS` without a request. ``package``: the folder the parent's fastmlp was
    imported from; a child that imported another copy compiles nothing (exit code 1)."""
    if package is not None and Path(package) != _PACKAGE:
        sys.exit(f"fastmlp's background compiler imported {_PACKAGE}, not the parent's {package}")
    lines = _requests(sys.stdin.fileno()) if lines is None else lines
    answer = answer or sys.stdout
    for line in lines:
        request = json.loads(line)
        kernel = _fastmlp_attribute(request["kernel"])
        kernel.compile(tuple(decode_type(d) for d in request["sig"]))
        try:
            print(request["id"], file=answer, flush=True)
        except OSError:             # the parent has gone: compile the rest for the next run
            pass


def _requests(fd):
    """Lines read from the file descriptor ``fd`` until it ends or stays empty for
    :data:`IDLE_SECONDS` (read unbuffered: a buffered line would not wake ``select``)."""
    import select

    unread = b""
    while True:
        while b"\n" in unread:
            line, unread = unread.split(b"\n", 1)
            yield line
        if not select.select([fd], [], [], IDLE_SECONDS)[0]:
            return
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        unread += chunk


# the child's program; {package}: the parent's fastmlp folder
_CHILD_PROGRAM = "from fastmlp.engine.background import serve; serve(package={package})"
_PACKAGE = Path(__file__).resolve().parents[1]


class _Compiler:
    """The parent's side: one child at a time, the requests it has, what came back."""

    def __init__(self):
        self.lock = threading.RLock()
        self.child = None           # [Popen (its stderr file as .errors), answers not yet read]
        self.requests = 0           # requests made: the last one's number
        self.numbers = {}           # (kernel, sig) -> request number
        self.pending = {}           # request number -> (kernel, sig)
        self.settled = set()        # (kernel, sig) the child compiled, or could not
        self.resent = set()         # (kernel, sig) asked of a second child
        self.retry_at = {}
        self.closing = []           # children whose input is closed, until they have ended

    def takes(self, kernel, sig):
        """Whether the background compiler compiles ``kernel`` for ``sig`` (asked now or
        before): False when it has already done so or failed, or cannot, so the caller compiles
        it."""
        with self.lock:
            self.poll()
            key = (kernel, sig)
            if key in self.settled:
                return False
            if key in self.numbers:
                return True
            number = self.requests = self.requests + 1
            try:
                line = request_line(number, kernel, sig)
                if self.child is None:
                    self.child = [_start_child(), b""]
                self.child[0].stdin.write((line + "\n").encode())
                self.child[0].stdin.flush()
            except (TypeError, OSError, ValueError) as exc:
                log.warning("fastmlp: cannot compile %s in the background (%s); compiling it "
                            "here", kernel.py_func.__qualname__, exc)
                self.settled.add(key)
                return False
            self.numbers[key] = number
            self.pending[number] = key
            log.info("fastmlp: compiling %s in the background; the NumPy reference runs "
                     "meanwhile", kernel.py_func.__qualname__)
            return True

    def poll(self):
        """Take the child's answers. When it has ended, what it did not answer is settled (to be
        compiled in the calling process); with nothing pending, its input is closed, so it ends."""
        self.closing = [p for p in self.closing if p.poll() is None]
        if self.child is None:
            return
        process, unread = self.child
        ended = process.poll() is not None          # before reading: then all its answers are in
        try:
            while chunk := os.read(process.stdout.fileno(), 4096):
                unread += chunk
        except BlockingIOError:
            pass
        *answers, self.child[1] = unread.split(b"\n")
        for number in answers:
            key = self.pending.pop(int(number), None)
            if key is not None:
                self.settled.add(key)
        again = [key for key in self.pending.values() if key not in self.resent]
        if ended and process.returncode == 0 and again and len(again) == len(self.pending):
            # it ended idle just as requests came: a new child takes them (once)
            self.pending.clear()
            self._close(process)
            for key in again:
                self.resent.add(key)
                del self.numbers[key]
                self.takes(*key)
            return
        if ended and self.pending:
            process.errors.seek(0)
            tail = process.errors.read()[-2000:].decode(errors="replace")
            log.warning("fastmlp: the background compiler ended (exit code %s) with %d kernels "
                        "to go; they compile in this process instead.\n%s", process.returncode,
                        len(self.pending), tail)
            self.settled.update(self.pending.values())
            self.pending.clear()
        if not self.pending:
            self._close(process)

    def _close(self, process):
        """Close the pipes to the child (it ends at the end of its input); reap it later."""
        for stream in (process.stdin, process.stdout, process.errors):
            stream.close()
        self.child = None
        self.closing.append(process)

    def wait(self, timeout=None):
        """See the module's :func:`wait`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.lock:
                self.poll()
                if not self.pending:
                    return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def _start_child():
    """A Python process running :func:`serve` with the parent's interpreter, environment (so
    the same Numba cache), working folder and module search path (so the same fastmlp, which
    it checks); in a session of its own, so that Ctrl-C in a terminal stops the parent but
    lets the child finish."""
    program = (f"import sys; sys.path[:] = {sys.path!r}; "
               + _CHILD_PROGRAM.format(package=repr(str(_PACKAGE))))
    errors = tempfile.TemporaryFile()
    process = subprocess.Popen([sys.executable, "-c", program], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=errors, start_new_session=True)
    process.errors = errors
    os.set_blocking(process.stdout.fileno(), False)
    return process


_COMPILER = _Compiler()


def _forget_after_fork():
    """In a forked child: a compiler of its own (the parent's child and pipes stay the parent's)."""
    global _COMPILER
    _COMPILER = _Compiler()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
