"""scripts/common.run_child, the one child-process runner of the benchmark scripts."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from common import run_child  # noqa: E402

CHILD = ("import json, os, sys\n"
         "print('noise')\n"
         "print('TAG ' + json.dumps({'rank': os.environ.get('RANK'),"
         " 'world': os.environ.get('WORLD_SIZE'), 'x': os.environ.get('X')}))\n"
         "print('to stderr', file=sys.stderr)\n"
         "sys.exit(int(os.environ.get('FAIL_RANK', '-1') == os.environ.get('RANK', '0')))\n")


def test_run_child_returns_tagged_json_and_usage():
    out, usage = run_child([sys.executable, "-c", CHILD], tag="TAG ", env={"X": "1"})
    assert out == {"rank": None, "world": None, "x": "1"}
    assert usage["peak_rss_mb"] > 1 and usage["seconds"] > 0


def test_run_child_world_size_reports_rank_zero():
    out, _ = run_child([sys.executable, "-c", CHILD], tag="TAG ", world_size=3)
    assert out["rank"] == "0" and out["world"] == "3"


def test_run_child_failure_raises_and_shows_captured_stderr(capfd):
    with pytest.raises(RuntimeError, match=r"exit \[0, 1\]"):
        run_child([sys.executable, "-c", CHILD], tag="TAG ", world_size=2,
                  env={"FAIL_RANK": "1"}, capture_stderr=True)
    assert "to stderr" in capfd.readouterr().err
    with pytest.raises(RuntimeError, match="exit 0"):  # no tagged line
        run_child([sys.executable, "-c", "print('x')"], tag="TAG ")
