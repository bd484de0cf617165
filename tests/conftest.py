"""Shared test setup: tests/ on sys.path so that test modules import their shared code from ``helpers``,
with pytest's assertion rewriting for it (its checks, e.g. ``helpers.splits.check_invariants``, report like a
test's own asserts)."""
import sys
from pathlib import Path

import pytest

TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:  # pytest's default import mode adds it too; --import-mode=importlib does not
    sys.path.insert(0, TESTS)

pytest.register_assert_rewrite("helpers")
