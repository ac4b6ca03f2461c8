"""The thread count timed on a call's own minibatches (fastmlp.engine.tuner): the search's
decisions on given times, and that its pieces and counts never change a bit of training."""

from contextlib import nullcontext

import numpy as np
import pytest

from fastmlp import MLP, engine
from fastmlp.engine import tuner
from fastmlp.engine.tuner import (CLEARLY_SLOWER, MARGIN, RETRIAL_SECONDS, TRIAL_ROUNDS,
                                  TRIAL_SECONDS, WINS_NEEDED, Search)

from test_thread_count import CASES, LAYERS, OPTIMIZERS


def test_counts_halve_from_the_most():
    assert tuner.counts_from(16) == [16, 8, 4, 2, 1]
    assert tuner.counts_from(6) == [6, 3, 2, 1]
    assert tuner.counts_from(3) == [3, 2, 1]
    assert tuner.counts_from(1) == [1]


def run_search(counts, per_step, left=10_000):
    """Feed a search the times ``per_step[count]`` (seconds a minibatch) until it finds a count;
    returns (the count, the threads of every piece, the minibatches of every piece)."""
    search, threads, steps = Search(counts), [], []
    for _ in range(1000):
        count, n, timed = search.piece(left)
        assert 1 <= n <= left
        threads.append(count)
        steps.append(n)
        if not timed:
            return count, threads, steps
        search.record(count, per_step[count] * n, n)
    raise AssertionError("the search never ended")


def test_fewer_threads_win_only_when_faster_by_the_margin():
    assert run_search([2, 1], {2: 1e-3, 1: 2e-3})[0] == 2
    assert run_search([2, 1], {2: 1e-3, 1: 0.5e-3})[0] == 1
    assert run_search([2, 1], {2: 1e-3, 1: (1 - MARGIN / 2) * 1e-3})[0] == 2


def test_the_search_stops_at_the_first_count_that_does_not_win():
    times = {16: 3e-3, 8: 2e-3, 4: 2.5e-3, 2: 1e-3, 1: 1e-3}
    found, threads, _ = run_search([16, 8, 4, 2, 1], times)
    assert found == 8
    assert set(threads) == {16, 8, 4}        # 2 and 1 were never run: 4 lost to 8 already


def test_samples_are_interleaved_and_last_trial_seconds():
    found, threads, steps = run_search([2, 1], {2: 1e-3, 1: 1.1e-3})
    # samples in turn, each count's first minibatch untimed, then the rest on the count found
    assert threads == [2, 2, 1, 1] + [2, 1] * (TRIAL_ROUNDS - 1) + [2]
    assert steps[0] == steps[2] == 1
    assert steps[1] * 1e-3 >= TRIAL_SECONDS and steps[3] * 1.1e-3 >= TRIAL_SECONDS
    assert steps[-1] == 10_000


def test_a_count_clearly_slower_is_sampled_once():
    found, threads, _ = run_search([2, 1], {2: 1e-3, 1: CLEARLY_SLOWER * 1.01e-3})
    assert found == 2 and threads == [2, 2, 1, 1, 2]


def test_a_sample_spans_pieces_until_it_lasts_trial_seconds():
    search = Search([2, 1])
    pieces = []
    while search.found is None:
        count, n, timed = search.piece(1)
        assert n == 1 and timed
        pieces.append(count)
        search.record(count, {2: 1e-3, 1: 0.4e-3}[count], 1)
    assert search.found == 1
    assert pieces.count(2) > TRIAL_ROUNDS * TRIAL_SECONDS / 1e-3
    assert pieces.count(1) >= TRIAL_ROUNDS * TRIAL_SECONDS / 0.4e-3


def test_a_whole_call_is_a_sample():
    """Full-batch gradient descent: one minibatch a call, each call a sample however short."""
    search = Search([2, 1])
    pieces = []
    while search.found is None:
        count, n, timed = search.piece(1)
        pieces.append(count)
        search.record(count, {2: 1e-3, 1: 0.4e-3}[count], 1, whole=True)
    # each count's first call untimed, then WINS_NEEDED comparisons of TRIAL_ROUNDS samples each
    assert search.found == 1
    assert pieces == [2, 2, 1, 1] + [2, 1] * (TRIAL_ROUNDS * WINS_NEEDED - 1)


def test_fewer_threads_must_win_comparisons_in_a_row():
    """Two threads slowed for a moment (the first comparison) do not make the pick."""
    search, won_once = Search([2, 1]), False
    while search.found is None:
        count, n, _ = search.piece(100)
        slow = 3.0 if count == 2 and search.wins == 0 else 1.0
        search.record(count, {2: 1e-3 * slow, 1: 1.5e-3}[count] * n, n)
        won_once = won_once or search.wins == 1
    assert won_once and search.found == 2


def test_a_count_whose_kernel_is_compiling_loses():
    search = Search([4, 2, 1])
    while search.piece(100)[0] == 4:
        count, n, _ = search.piece(100)
        search.record(count, 1e-3 * n, n)
    search.missing(4)                  # the best's own kernel: not for the search to judge
    assert search.found is None
    search.missing(2)
    assert search.found == 4


def test_a_piece_on_another_count_is_not_a_sample():
    search = Search([2, 1])
    search.record(2, 1e-3, 1)          # the untimed first piece
    expected = search.piece(100)[0]
    search.record(3 - expected, 1.0, 100)
    assert search.seconds == 0.0 and search.found is None


def test_a_count_found_is_timed_again_after_training_a_while_on_it():
    search = Search([2, 1])
    while search.found is None:
        count, n, _ = search.piece(100)
        search.record(count, {2: 1e-3, 1: 0.5e-3}[count] * n, n)
    assert search.found == 1
    search.record(1, RETRIAL_SECONDS / 2, 100)
    search.restart_if_due()
    assert search.found == 1                    # idle time does not count, training does
    search.record(1, RETRIAL_SECONDS, 100)
    search.restart_if_due()
    assert search.found is None and search.piece(100)[0] == 2 and search.warm == {1, 2}


def test_fastmlp_tune_switches_timing_off(monkeypatch):
    monkeypatch.setenv("FASTMLP_TUNE", "off")
    assert tuner.mode() == "off" and tuner.search_for(("some kind",), 2) is None
    monkeypatch.setenv("FASTMLP_TUNE", "sometimes")
    with pytest.raises(ValueError, match="FASTMLP_TUNE"):
        tuner.mode()
    monkeypatch.delenv("FASTMLP_TUNE")
    assert tuner.mode() == "on"
    with tuner.fixed():
        assert tuner.mode() == "off"
    assert tuner.search_for(("some kind",), 1) is None       # one thread: nothing to time


@pytest.fixture(autouse=True)
def timing_on(monkeypatch):
    """These tests are about the timed count, whatever FASTMLP_TUNE the run was started with."""
    monkeypatch.setenv("FASTMLP_TUNE", "on")


@pytest.fixture
def every_minibatch_a_sample(monkeypatch):
    """Samples of one minibatch each, so that a short fit runs pieces on every count."""
    monkeypatch.setattr(tuner, "TRIAL_SECONDS", 1e-12)
    tuner.forget()
    ran = []
    record = Search.record
    monkeypatch.setattr(Search, "record",
                        lambda self, threads, *a, **k: (ran.append(threads), record(self, threads,
                                                                                    *a, **k)))
    yield ran
    tuner.forget()


def fit(scheme, batch, opt, timed, threads=2):
    """Weights and epoch losses after 2 epochs of ``scheme`` planned for 2 cores, on the fastest
    count up to ``threads`` (``timed``) or on ``threads``."""
    forced = (engine.plan.FORCE_SCHEME, engine.plan.PLAN_CORES, engine.plan.MIN_MACS_PER_THREAD,
              engine.plan.CHUNK_ROWS, engine.plan.BLOCK_ROWS)
    engine.plan.FORCE_SCHEME, engine.plan.PLAN_CORES = scheme, 2
    engine.plan.MIN_MACS_PER_THREAD, engine.plan.CHUNK_ROWS, engine.plan.BLOCK_ROWS = 1, 48, 16
    try:
        rng = np.random.default_rng(0)
        X, y = rng.random((400, LAYERS[0])).astype("float32"), rng.integers(0, LAYERS[-1], 400)
        model = MLP(LAYERS, seed=5, threads=threads)
        with nullcontext() if timed else tuner.fixed():
            model.fit(X, y, epochs=2, batch_size=batch,
                      optimizer="adam" if opt == "adam" else "sgd", **OPTIMIZERS[opt])
        return np.append(model._flat, model.history_["loss"])
    finally:
        (engine.plan.FORCE_SCHEME, engine.plan.PLAN_CORES, engine.plan.MIN_MACS_PER_THREAD,
         engine.plan.CHUNK_ROWS, engine.plan.BLOCK_ROWS) = forced


@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("scheme,batch", CASES)
def test_timed_pieces_give_the_bits_of_one_call(scheme, batch, opt, every_minibatch_a_sample):
    one = fit(scheme, batch, opt, timed=False, threads=1)   # (compiles the 1-thread kernel)
    timed = fit(scheme, batch, opt, timed=True)
    assert {1, 2} <= set(every_minibatch_a_sample)          # pieces ran on both counts
    assert np.array_equal(timed, fit(scheme, batch, opt, timed=False))
    assert np.array_equal(timed, one)


def test_a_divergence_in_a_later_piece_keeps_its_index(every_minibatch_a_sample, monkeypatch):
    """A non-finite loss at minibatch 6 stops the call there, as one uncut call would."""
    monkeypatch.setattr(engine.plan, "PLAN_CORES", 2)
    monkeypatch.setattr(engine.plan, "MIN_MACS_PER_THREAD", 1)
    rng = np.random.default_rng(1)
    X = rng.random((320, LAYERS[0])).astype("float32")
    X[6 * 32 + 3, 0] = np.nan
    y = rng.integers(0, LAYERS[-1], 320)
    runs = []
    for timed in (True, False):
        model = MLP(LAYERS, seed=5, threads=2)
        net, state = model._network(), engine.OptimizerState("sgd", model._flat.size,
                                                               model._flat.dtype)
        batches = engine.Batches(X, y, np.zeros((0, LAYERS[-1]), "float32"),
                                 np.arange(320, dtype=np.int64), 32)
        with nullcontext() if timed else tuner.fixed():
            stats = engine.train(net, state, batches, engine.Hyper.of("sgd", lr=0.05), threads=2,
                                 guard=False)
        runs.append((stats.diverged_at, stats.steps, state.step, stats.loss_sum, stats.samples,
                     net.flat.copy()))
    assert runs[0][:5] == runs[1][:5] and runs[0][:3] == (6, 6, 6)
    assert np.array_equal(runs[0][5], runs[1][5])
    assert len(every_minibatch_a_sample) > 1



@pytest.mark.parametrize("twin", ["numba", "numpy"])
def test_statistics_run_on_over_calls_as_in_one(twin):
    """train_batches continues a running sum of statistics: two calls give one call's bits."""
    from fastmlp import reference

    run = engine.train_batches if twin == "numba" else reference.train_batches
    rng = np.random.default_rng(2)
    X = rng.random((7 * 32 + 5, LAYERS[0])).astype("float32")
    y = rng.integers(0, LAYERS[-1], len(X))
    results = []
    for cut in (None, 3 * 32):
        model = MLP(LAYERS, seed=5)
        net = model._network()
        state = engine.OptimizerState("adam", net.flat.size, net.flat.dtype)
        hyper = engine.Hyper.of("adam", lr=0.01)
        order = rng.permutation(len(X)).astype(np.int64) if cut is None else results[0][2]
        whole = engine.Batches(X, y, np.zeros((0, LAYERS[-1]), "float32"), order, 32,
                               plan_rows=len(X))
        if cut is None:
            raw = run(net, state, whole, hyper)
        else:
            raw = run(net, state, whole._replace(order=order[:cut]), hyper)
            state.step += int(raw[3])
            assert run(net, state, whole._replace(order=order[cut:]), hyper, raw) is raw
        results.append((raw.copy(), net.flat.copy(), order))
    assert np.array_equal(results[0][0], results[1][0]) and results[0][0][3] == 8
    assert np.array_equal(results[0][1], results[1][1])


def test_while_the_kernel_compiles_the_rest_of_a_call_runs_on_the_reference(monkeypatch):
    """The compiled kernel missing (compiling in the background): the first piece falls back
    to the reference, which takes the rest of the call at once, untimed, to the same bits as an
    uncut reference call."""
    from fastmlp.engine import background

    monkeypatch.setattr(engine.plan, "PLAN_CORES", 2)
    monkeypatch.setattr(engine.plan, "MIN_MACS_PER_THREAD", 1)
    tuner.forget()
    pieces = []
    monkeypatch.setattr(background, "attempt",
                        lambda site, call, kernels, request=True: (pieces.append(site),
                                                                   (False, None))[1])
    rng = np.random.default_rng(3)
    X = rng.random((320, LAYERS[0])).astype("float32")
    y = rng.integers(0, LAYERS[-1], 320)
    flats = []
    for run in ("numba", "numpy"):
        model = MLP(LAYERS, seed=5)
        net = model._network()
        state = engine.OptimizerState("sgd", net.flat.size, net.flat.dtype)
        stats = engine.train(net, state, engine.Batches(X, y, np.zeros((0, LAYERS[-1]), "float32"),
                                                        np.arange(320, dtype=np.int64), 32),
                             engine.Hyper.of("sgd", lr=0.05), threads=2, engine=run)
        assert stats.engine == "numpy" and stats.steps == 10 and state.step == 10
        flats.append((net.flat.copy(), stats.loss_sum))
    assert pieces == ["train", "train"]         # the first minibatch, then all the rest
    assert np.array_equal(flats[0][0], flats[1][0]) and flats[0][1] == flats[1][1]
    assert tuner.found(next(iter(tuner._SEARCHES))) is None     # nothing was timed
    tuner.forget()


def test_a_count_whose_kernel_compiles_loses_and_the_call_stays_compiled(
        every_minibatch_a_sample, monkeypatch):
    """One thread runs the serial build of the rows scheme: while it compiles in the background,
    the search keeps two threads and no minibatch runs on the reference."""
    import numba

    from fastmlp.engine import background

    monkeypatch.setattr(engine.plan, "PLAN_CORES", 2)
    monkeypatch.setattr(engine.plan, "MIN_MACS_PER_THREAD", 1)
    attempt, asked = background.attempt, []

    def missing_on_one_thread(site, call, kernels, request=True):
        if numba.get_num_threads() > 1:
            return attempt(site, call, kernels, request)
        asked.append((site, request))
        return False, None

    monkeypatch.setattr(background, "attempt", missing_on_one_thread)
    rng = np.random.default_rng(4)
    X = rng.random((4096, LAYERS[0])).astype("float32")
    y = rng.integers(0, LAYERS[-1], 4096)
    runs = []
    for timed in (True, False):
        model = MLP(LAYERS, seed=5)
        net = model._network()
        state = engine.OptimizerState("sgd", net.flat.size, net.flat.dtype)
        batches = engine.Batches(X, y, np.zeros((0, LAYERS[-1]), "float32"),
                                 np.tile(np.arange(4096, dtype=np.int64), 4), 2048)  # rows scheme
        with nullcontext() if timed else tuner.fixed():
            stats = engine.train(net, state, batches, engine.Hyper.of("sgd", lr=0.05), threads=2)
        runs.append((stats.engine, stats.loss_sum, net.flat.copy()))
    assert runs[0][0] == runs[1][0] == "numba" and runs[0][1] == runs[1][1]
    assert np.array_equal(runs[0][2], runs[1][2])
    assert [s.found for s in tuner._SEARCHES.values()] == [2]
    assert asked == [("train on 1", False)]     # tried once, not compiled nor requested
