"""Meta-test: every registered encoder has tests of its own and a contract case."""

from __future__ import annotations

import ast
from pathlib import Path

from test_enc_common import CASES

from gnn_inn.encoders import ENCODERS, Encoder

HERE = Path(__file__).parent


def _covered() -> dict[str, str]:
    """``name -> test file`` from each file's ``ENCODERS_UNDER_TEST`` with test functions."""
    covered = {}
    for path in sorted(HERE.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        has_tests = any(isinstance(n, ast.FunctionDef) and n.name.startswith("test_")
                        for n in tree.body)
        for node in tree.body:
            if (isinstance(node, ast.Assign) and has_tests
                    and any(getattr(t, "id", None) == "ENCODERS_UNDER_TEST"
                            for t in node.targets)):
                for name in ast.literal_eval(node.value):
                    covered[name] = path.name
    return covered


def test_every_registered_encoder_has_its_own_tests():
    missing = sorted(set(ENCODERS) - set(_covered()))
    assert not missing, (
        f"encoders {missing} are registered in gnn_inn.encoders.ENCODERS but no test file in "
        f"{HERE.name}/ declares ENCODERS_UNDER_TEST for them; add a test_enc_<name>.py"
    )


def test_every_registered_encoder_runs_the_contract_tests():
    missing = sorted(set(ENCODERS) - set(CASES))
    assert not missing, f"add {missing} to CASES in test_enc_common.py"


def test_registry_holds_encoder_classes():
    assert all(isinstance(cls, type) and issubclass(cls, Encoder) for cls in ENCODERS.values())
