"""The thread count of training calls, found by timing them: ``threads=None`` runs on the
fastest count up to all cores, ``threads=N`` on the fastest up to N.

The plan (:mod:`.plan`) cuts a call's work into pieces for the cores this process may use, and
any count of threads from 1 to the plan's ``parts`` runs those pieces to the same result, bit
for bit. Which count is fastest is not the plan's to say: it depends on the machine, its
memory, and what else runs on it (with a core taken by another process, threads that meet at
barriers wait for it, and fewer threads are faster). So it is timed, on the call's own
minibatches, and a timed minibatch is trained as any other:

- counts are tried from the most down, halving: 16, 8, 4, 2, 1;
- each new count is timed against the best so far in TRIAL_ROUNDS interleaved samples of at
  least TRIAL_SECONDS of minibatches each, or of one whole call; a count's first minibatch is
  not timed (it warms the caches up, and may load another kernel: one thread runs the serial
  build of the parts scheme), and a count whose kernel is not compiled yet loses
  (nothing is compiled for a search);
- the fewer threads win when their fastest sample beats the best's by MARGIN in WINS_NEEDED
  comparisons in a row, and lose at once when a sample takes CLEARLY_SLOWER times the best's;
  the search stops at the first count that does not win;
- the count found serves every later call of the same kind (model, minibatch, dtype, plan, most
  threads) in this process, and is timed again after RETRIAL_SECONDS of training on it.

A search is cut into pieces at minibatch boundaries, which never changes a bit (see
:class:`fastmlp.engine.Batches`); a call of one minibatch (full-batch gradient descent) is one
piece, and its search goes on over the next calls. ``FASTMLP_TUNE=off`` (or
:func:`fixed`) runs every call on the plan's count, as many threads as it has parts.
docs/performance.md, "Timing the thread count", has the figures behind each constant.
"""

import math
import os
import threading
from contextlib import contextmanager

# a sample is at least this many seconds of minibatches on one count, or one whole call
TRIAL_SECONDS = 0.02
# samples of each of the two counts compared, taken in turn
TRIAL_ROUNDS = 3
# fewer threads are taken when they are at least this much faster ...
MARGIN = 0.03
# ... in this many comparisons in a row (a machine busy for a moment does not make the pick),
WINS_NEEDED = 2
# and lose at once, unsampled again, when a sample is this many times the best's
CLEARLY_SLOWER = 1.25
# a count found is timed again after it has trained this many seconds (the load changes)
RETRIAL_SECONDS = 5.0

MODES = ("on", "off")
_FIXED = 0             # > 0 inside fixed()
_SEARCHES = {}         # the kind of a call -> its Search
_LOCK = threading.Lock()


def mode():
    """"on" (time the thread count) or "off" (the plan's count), from FASTMLP_TUNE."""
    given = os.environ.get("FASTMLP_TUNE", "on").strip().lower() or "on"
    if given not in MODES:
        raise ValueError(f"FASTMLP_TUNE={given!r}; use 'on' (time the thread count of training "
                         "calls) or 'off' (as many threads as the plan has parts).")
    return "off" if _FIXED else given


@contextmanager
def fixed():
    """Run training calls in the body on the plan's thread count, untimed (for measurements
    of a count forced)."""
    global _FIXED
    with _LOCK:
        _FIXED += 1
    try:
        yield
    finally:
        with _LOCK:
            _FIXED -= 1


def counts_from(most):
    """The counts a search tries, from ``most`` down, halving (rounded up): 16, 8, 4, 2, 1."""
    counts = [int(most)]
    while counts[-1] > 1:
        counts.append((counts[-1] + 1) // 2)
    return counts


class Search:
    """The timing of one kind of call's thread counts: which count the next piece runs on, how
    many minibatches it takes, and what its time says."""

    def __init__(self, counts):
        self.counts = counts
        self.lock = threading.Lock()  # two Python threads may train calls of one kind at once
        self.warm = set()            # counts that have run an untimed first piece
        self.per_step = {}           # count -> seconds per minibatch of its last piece timed
        self.last = None             # the last piece's seconds per minibatch, on any count
        self.best, self.rival, self.wins = counts[0], 1, 0
        self.found, self.since = None, 0.0    # seconds trained on the count found since
        self._compare()

    def _compare(self):
        """Time the best so far against the next count: samples of each, in turn."""
        rival = self.counts[self.rival]
        self.todo = [self.best, rival] * TRIAL_ROUNDS
        self.times = {self.best: [], rival: []}
        self.seconds, self.steps = 0.0, 0          # the sample being taken

    def missing(self, threads):
        """The kernel of ``threads`` threads is not compiled yet (it compiles in the background):
        that count loses, untimed, until the search is made again."""
        with self.lock:
            if self.found is None and threads != self.best and threads == self.todo[0]:
                self.found, self.since = self.best, 0.0

    def restart_if_due(self):
        """Search again once the count found has trained for RETRIAL_SECONDS."""
        with self.lock:
            if self.found is not None and self.since > RETRIAL_SECONDS:
                self.best, self.rival, self.wins, self.found = self.counts[0], 1, 0, None
                self._compare()

    def piece(self, left):
        """(threads, minibatches, timed) of the next piece of a call with ``left`` minibatches
        to go."""
        with self.lock:
            return self._piece(left)

    def _piece(self, left):
        if self.found is not None:
            return self.found, left, False
        count = self.todo[0]
        if count not in self.warm:
            return count, 1, True
        per_step = self.per_step.get(count, self.last)
        steps = math.ceil(max(TRIAL_SECONDS - self.seconds, 0.0) / per_step) if per_step else 1
        return count, max(1, min(left, steps)), True

    def record(self, threads, seconds, steps, whole=False):
        """A piece of ``steps`` minibatches on ``threads`` took ``seconds``; ``whole``: the
        piece was a whole call (a sample then ends with it: it paid what a call costs)."""
        with self.lock:
            self._record(threads, seconds, steps, whole)

    def _record(self, threads, seconds, steps, whole):
        if self.found is not None:
            self.since += seconds
            return
        if steps < 1:
            return
        if threads != self.todo[0]:     # another call of this kind ran beside: not a sample
            return
        self.per_step[threads] = self.last = seconds / steps
        if threads not in self.warm:
            self.warm.add(threads)
            return
        self.seconds += seconds
        self.steps += steps
        if self.seconds < TRIAL_SECONDS and not whole:
            return
        self.times[self.todo.pop(0)].append(self.seconds / self.steps)
        self.seconds, self.steps = 0.0, 0
        rival = self.counts[self.rival]
        fastest = {count: min(times, default=math.inf) for count, times in self.times.items()}
        if fastest[rival] < math.inf and fastest[rival] > CLEARLY_SLOWER * fastest[self.best]:
            self.todo = []
        if self.todo:
            return
        if fastest[rival] < (1.0 - MARGIN) * fastest[self.best]:
            self.wins += 1
            if self.wins < WINS_NEEDED:
                self._compare()                     # the same two counts again
                return
            self.best, self.rival, self.wins = rival, self.rival + 1, 0
            if self.rival < len(self.counts):
                self._compare()
                return
        self.found, self.since = self.best, 0.0


def timing(most):
    """Whether a call on at most ``most`` threads has its count timed (not for one thread, nor
    with FASTMLP_TUNE=off)."""
    return most > 1 and mode() == "on"


def search_for(kind, most):
    """The :class:`Search` of a call of this ``kind`` on at most ``most`` threads, or None when
    there is nothing to time (see :func:`timing`)."""
    if not timing(most):
        return None
    with _LOCK:
        search = _SEARCHES.get(kind)
        if search is None:
            search = _SEARCHES[kind] = Search(counts_from(most))
        search.restart_if_due()
        return search


def found(kind):
    """The count a search found for calls of this ``kind``, or None."""
    search = _SEARCHES.get(kind)
    return None if search is None else search.found


def forget():
    """Drop every count found: the next calls time theirs again."""
    with _LOCK:
        _SEARCHES.clear()
