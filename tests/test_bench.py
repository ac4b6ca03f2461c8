"""fastmlp.bench, the report behind ``fastmlp bench``: FLOP counts, table, JSON and plot output,
arguments, and the epoch comparison the benchmarks rely on. Tiny sizes; no timing assertions."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastmlp import bench

TINY = ["--samples", "256", "--models", "784-16-10", "--batch-sizes", "64", "--gemm-size", "128",
        "--peers", "none", "--data", "synthetic", "--ref-fraction", "0.5"]


def test_matmul_flops_of_the_two_benchmark_models():
    # 784-128-10: forward 2(784*128 + 128*10) = 203264 per sample, weight gradients as many,
    # input gradient of the second layer only: 2 * 128*10 = 2560.
    assert bench.matmul_flops((784, 128, 10), 1) == 203264 + 203264 + 2560
    assert bench.forward_flops((784, 128, 10), 1) == 203264
    # 784-512-256-10: forward 2(401408 + 131072 + 2560) = 1070080; input gradients of layers
    # 2 and 3: 2(131072 + 2560) = 267264.
    assert bench.matmul_flops((784, 512, 256, 10), 1) == 2 * 1070080 + 267264
    assert bench.matmul_flops((784, 512, 256, 10), 60000) == 60000 * (2 * 1070080 + 267264)
    # a single layer has no input gradient to compute
    assert bench.matmul_flops((5, 3), 7) == 2 * 2 * 7 * 15


def test_floor_seconds_is_flops_over_throughput():
    flops = bench.matmul_flops((784, 128, 10), 60000)
    assert bench.floor_seconds((784, 128, 10), 60000, 100.0) == pytest.approx(flops / 100e9)


@pytest.mark.parametrize("text, layers", [("784-128-10", (784, 128, 10)),
                                          ("784,512,256,10", (784, 512, 256, 10)),
                                          ([4, 3], (4, 3))])
def test_parse_model(text, layers):
    assert bench.parse_model(text) == layers
    assert bench.parse_model(bench.model_name(layers)) == layers


@pytest.mark.parametrize("bad", ["784", "784-a-10", "784-0-10", ""])
def test_parse_model_rejects_bad_names(bad):
    with pytest.raises(ValueError, match="784-128-10"):
        bench.parse_model(bad)


def result_of(rows, peers=None, gflops=None):
    meta = {"samples": 60000, "dtype": "float32", "lr": 0.05, "data": "synthetic (test)",
            "blas": "test-blas", "gemm_size": 2048, "gemm_gflops": gflops or {"2": 100.0},
            "peers": peers or {}}
    return {"meta": meta, "rows": rows}


def row(model="784-128-10", batch=32, numba=1.0, numpy=5.0, timed=6000, **extra):
    layers = bench.parse_model(model)
    flops = bench.matmul_flops(layers, 60000)
    floor = flops / 100e9
    return dict({"model": model, "layers": list(layers), "batch_size": batch, "threads": 2,
                 "samples": 60000, "flops": flops, "numba_s": numba, "numpy_s": numpy,
                 "numpy_samples_timed": timed, "speedup": numpy / numba, "floor_s": floor,
                 "floor_fraction": floor / numba}, **extra)


def test_format_table_lines_up_rows_and_explains_the_numbers():
    text = bench.format_table(result_of([row(), row("784-512-256-10", 512, 2.5, 20.0)],
                                        peers={"torch": None, "sklearn": None}))
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("model"))
    for column in ("batch", "thr", "numba s", "numpy s*", "speed-up", "floor s", "floor/numba"):
        assert column in header
    body = [line for line in lines if line.startswith("784-")]
    assert len(body) == 2
    assert len({len(line) for line in body + [header]}) == 1       # aligned columns
    assert "5.0x" in body[0] and "8.0x" in body[1]
    assert "0.245" in body[0] and "25%" in body[0]                 # 24.5 GFLOP at 100 GFLOP/s
    assert "timed on the first 6000 samples" in text and "scaled to 60000" in text
    assert "torch: skipped (not installed; pip install torch)" in text
    assert "sklearn: skipped (not installed" in text
    assert "synthetic (test)" in text and "test-blas" in text and "100.0 GFLOP/s at 2 threads" in text


def test_rounds_that_spread_or_beat_the_floor_are_flagged_busy():
    steady = row(numba_times=[1.0, 1.05, 0.98], speedups=[5.0, 5.1, 4.9])
    noisy = row("784-512-256-10", 512, 5.0, numba_times=[5.0, 3.0, 10.5], speedups=[0.6, 63.5, 11.0])
    too_fast = row(numba=0.1)
    for r in (steady, noisy, too_fast):
        r["busy"] = bench.busy(r)
    assert steady["busy"] == ""
    assert noisy["busy"] == "numba epochs spread 3.50x; speed-ups spread 105.83x"
    assert too_fast["busy"] == "faster than the GEMM floor"
    text = bench.format_table(result_of([steady, noisy, too_fast]))
    body = [line for line in text.splitlines() if line.startswith("784-")]
    assert not body[0].endswith("busy!") and body[1].endswith("busy!") and body[2].endswith("busy!")
    assert "0.980-1.050" in body[0] and "4.9-5.1x" in body[0]
    assert "medians of 3 paired rounds" in text
    assert ("busy! 784-512-256-10 batch 512 threads 2: numba epochs spread 3.50x; speed-ups "
            "spread 105.83x; the machine was busy, rerun this row") in text


def test_format_table_with_peers_and_unscaled_reference():
    text = bench.format_table(result_of([row(timed=60000, torch_s=0.5, sklearn_s=12.0)],
                                        peers={"torch": "2.0", "sklearn": "1.5"}))
    header = next(line for line in text.splitlines() if line.startswith("model"))
    assert "torch s" in header and "sklearn s" in header and "*" not in header
    assert "timed on the first" not in text
    assert "torch 2.0: eager" in text and "sklearn 1.5: MLPClassifier" in text


def test_format_table_when_peers_were_not_requested():
    text = bench.format_table(result_of([row()]))
    assert "torch: skipped (not requested)" in text


def test_main_prints_the_table_and_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert bench.main(TINY + ["--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "784-16-10" in out and "speed-up" in out and f"wrote {path}" in out
    result = json.loads(path.read_text())
    assert result["meta"]["samples"] == 256
    assert result["meta"]["data"].startswith("synthetic")
    assert result["meta"]["peers"] == {}
    (r,) = result["rows"]
    assert (r["model"], r["batch_size"], r["numpy_samples_timed"]) == ("784-16-10", 64, 128)
    assert r["flops"] == bench.matmul_flops((784, 16, 10), 256)
    for key in ("numba_s", "numpy_s", "speedup", "floor_s", "floor_fraction", "numba_gflops"):
        assert np.isfinite(r[key]) and r[key] > 0, key
    # medians of the paired rounds: the speed-up is the median of the pairs' ratios
    assert len(r["numba_times"]) == len(r["numpy_times"]) == len(r["speedups"]) == 3
    assert r["speedups"] == pytest.approx([b / a for a, b in zip(r["numba_times"], r["numpy_times"])])
    assert r["speedup"] == pytest.approx(sorted(r["speedups"])[1])
    assert r["numba_s"] == pytest.approx(sorted(r["numba_times"])[1])
    assert np.isfinite(r["numba_loss"])


def test_main_draws_a_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    assert bench.main(TINY + ["--plot", str(path), "--threads", "1"]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv", [["--models", "784-x-10"], ["--batch-sizes", "0"],
                                  ["--ref-fraction", "2"], ["--threads", "0"]])
def test_main_rejects_bad_arguments(argv, capsys):
    assert bench.main(argv) == 2
    assert "fastmlp bench" in capsys.readouterr().err


def test_synthetic_data_is_deterministic_and_shaped_like_mnist():
    X, y, X_test, y_test, source = bench.bench_data(300, 50, "synthetic")
    assert X.shape == (300, 784) and X.dtype == np.float32 and y.dtype == np.int64
    assert X_test.shape == (50, 784) and y_test.shape == (50,)
    assert 0 <= X.min() and X.max() <= 1 and set(np.unique(y)) <= set(range(10))
    assert "synthetic" in source
    bench.bench_data.cache_clear()
    np.testing.assert_array_equal(bench.bench_data(300, 50, "synthetic")[0], X)


def test_compare_epochs_accepts_the_engines_and_rejects_a_wrong_result():
    X, y, _, _, _ = bench.bench_data(256, 1, "synthetic")
    cases = [bench.EpochCase(e, (784, 16, 10), 32, 1, X, y) for e in ("numba", "numpy")]
    for case in cases:
        case.run()
    assert bench.compare_epochs(*cases) < 0.2
    fast, ref = cases
    fast.flat[:] = fast.start - 2 * (ref.start - ref.flat)        # a step twice too long
    with pytest.raises(AssertionError, match="weights"):
        bench.compare_epochs(fast, ref)
    fast.stats = fast.stats._replace(loss_sum=fast.stats.loss_sum * 1.1)   # a loss 10% off
    with pytest.raises(AssertionError, match="loss"):
        bench.compare_epochs(fast, ref)


def test_epoch_case_reset_restores_the_start():
    X, y, _, _, _ = bench.bench_data(128, 1, "synthetic")
    case = bench.EpochCase("numpy", (784, 8, 10), 64, 1, X, y)
    case.run()
    assert not np.array_equal(case.flat, case.start)
    case.reset()
    np.testing.assert_array_equal(case.flat, case.start)
    assert case.stats.samples == 128 and case.stats.diverged_at is None


def test_fastmlp_bench_subcommand(capsys):
    from fastmlp import cli

    assert cli.main(["bench"] + TINY) == 0
    assert "floor/numba" in capsys.readouterr().out
    assert cli.main(["bench", "--models", "784-x-10"]) == 2


def test_kernel_benchmarks_run_and_check_their_results():
    """benchmarks/test_kernels.py in its quick mode (a few seconds): each kernel benchmark calls
    the kernels as the engine does and checks the result against the reference, so a kernel
    whose signature changed fails here, not only in a benchmark run (the softmax benchmark
    still called the kernel without per-sample weights until this test existed)."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, FASTMLP_BENCH_QUICK="1")
    result = subprocess.run([sys.executable, "-m", "pytest", "benchmarks/test_kernels.py",
                             "--benchmark-only", "-q", "-p", "no:cacheprovider"],
                            cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_matrix_row_times_every_engine_and_formats(monkeypatch):
    from fastmlp import matrix

    monkeypatch.setattr(matrix, "ROWS", 96)
    work = matrix.Workload("tiny full batch", (12, 8, 3), "relu", "softmax", None, 2)
    row = matrix.run_row(work, 1, rounds=2, peers=False, gflops=50.0)
    assert row["batch"] == 96 and row["threads"] == 1
    assert row["fastmlp_s"] > 0 and row["numpy_s"] > 0 and row["vs_numpy"] > 0
    lo, hi = row["fastmlp_spread"]
    assert lo <= row["fastmlp_s"] <= hi
    assert row["floor_s"] == pytest.approx(matrix.matmul_flops((12, 8, 3), 96) / 50e9)
    table = matrix.format_matrix({"meta": {"rows_of_data": 96, "rounds": 2, "cores": 2,
                                           "gemm_gflops": {"1": 50.0}, "torch": None},
                                  "rows": [row]})
    assert "| tiny full batch | 12-8-3 relu | 96 | 1 |" in table
    assert "not installed" in table and table.count("\n") == 4


def test_matrix_orders_are_full_epochs_or_draws():
    from fastmlp import matrix

    full = matrix.Workload("f", (784, 20, 10), "relu", "softmax", None, 3)
    order = matrix.workload_order(full)
    assert len(order) == 3 * matrix.ROWS
    assert sorted(order[:matrix.ROWS]) == list(range(matrix.ROWS))
    drawn = matrix.Workload("d", (784, 20, 10), "relu", "softmax", 128, 5, replacement=True)
    assert len(matrix.workload_order(drawn)) == 640


def test_bench_matrix_rejects_zero_rounds(capsys):
    from fastmlp import bench

    assert bench.main(["--matrix", "--rounds", "0"]) == 2
    assert "--rounds" in capsys.readouterr().err


def test_matrix_rows_can_be_picked_by_name_or_model(capsys):
    from fastmlp import bench, matrix

    assert [w.name for w in matrix.select_workloads(["784-2048-10"])] == ["wide"]
    assert len(matrix.select_workloads(["notebook"])) == 5
    assert matrix.select_workloads(None) == matrix.WORKLOADS
    assert bench.main(["--matrix", "--only", "no-such-row"]) == 2
    assert "no matrix row matches" in capsys.readouterr().err
