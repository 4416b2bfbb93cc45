"""scripts/bench_scale.py end to end on a tiny scaled KG: both allocator runs happen and the
pinned one really runs under the pinned glibc settings."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch_sparse")
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_scale.py"


def test_bench_scale_runs_default_and_pinned_children(tmp_path):
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--scales", "0.0002", "--steps", "2", "--warmup", "1",
         "--dim", "8", "--bases", "2", "--fanout", "3", "--batch-size", "32",
         "--negatives", "8", "--threads", "1", "--no-inference", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())
    assert row["entities"] == 500 and row["steps"] == 2
    assert row["malloc"] == "default"
    assert all(v is None for v in row["malloc_env"].values())
    pinned = row["pinned"]
    assert pinned["malloc_env"] == {"MALLOC_MMAP_THRESHOLD_": "65536",
                                    "MALLOC_TRIM_THRESHOLD_": "0"}
    # same seeds, same graph: both children sample the same subgraphs
    assert pinned["nodes_per_step"] == row["nodes_per_step"]
    assert "step MB (pinned malloc)" in proc.stdout
    if "step_transient_mb" in pinned:  # Linux: the kernel's peak-RSS mark can be reset
        assert row["pinned_step_transient_mb"] == pinned["step_transient_mb"] >= 0


@pytest.mark.slow
def test_bench_scale_flagship_two_ranks_reports_row_exchange(tmp_path):
    """The flagship (CompGCN + rotation flow) under two gloo ranks: rank 0 reports the bytes
    it sent per step for the gradients — the touched rows of the entity table plus the dense
    rest of the model — below a dense all-reduce of all gradients."""
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--scales", "0.002", "--steps", "2", "--warmup", "1",
         "--dim", "8", "--fanout", "2", "--batch-size", "16", "--model", "compgcn-flow",
         "--negatives", "8", "--threads", "1", "--no-inference", "--world-size", "2",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (row,) = json.loads(out.read_text())
    assert row["model"] == "compgcn-flow" and row["world_size"] == 2
    assert row["entities"] == 5001 and row["steps"] == 2
    assert 0 < row["exchange_rows_per_step"] < row["entities"]
    assert 0 < row["exchange_mb_per_step"] < row["dense_allreduce_mb"]
    assert "exchange MB/step" in proc.stdout
