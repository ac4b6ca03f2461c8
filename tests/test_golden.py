"""The final weights of fixed training runs are what they were when tests/data/golden_weights.json
was recorded, bit for bit (a subset here; ``python -m benchmarks.tools.golden --check
tests/data/golden_weights.json`` runs all 1948). Bits depend on the BLAS and the instruction
set, so the test skips where the recorded fingerprint differs from this machine's."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden_weights.json"


def test_a_subset_of_the_golden_runs_matches_bitwise():
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.tools import golden
    finally:
        sys.path.pop(0)
    recorded = json.loads(GOLDEN.read_text())
    if recorded["fingerprint"] != golden.fingerprint():
        pytest.skip(f"recorded on {recorded['fingerprint']}, this machine is {golden.fingerprint()}")
    runs = golden.compute(quick=True)
    assert len(runs) >= 40 and any("/t2/" in key for key in runs)
    differ = [key for key, digest in runs.items() if recorded["runs"][key] != digest]
    assert not differ, f"{len(differ)} of {len(runs)} runs changed: {differ[:5]}"
