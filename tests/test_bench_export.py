"""bench/export.py's round logic: orders alternate, ratios pair runs of the same round."""

import importlib.util

import pytest

from conftest import ROOT

spec = importlib.util.spec_from_file_location("bench_export", ROOT / "bench" / "export.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_rounds_alternate_so_no_runtime_is_always_first_or_last():
    names = [label for label, _, _ in bench.RUNTIMES]
    orders = [bench.round_order(names, i) for i in range(4)]
    assert orders[0] == orders[2] == names
    assert orders[1] == orders[3] == names[::-1]
    assert {o[0] for o in orders} == {names[0], names[-1]}


def test_ratios_divide_by_the_base_in_the_same_round():
    runs = {"base": [{"tok_s": 2.0}, {"tok_s": 4.0}], "fast": [{"tok_s": 10.0}, {"tok_s": 12.0}]}
    got = bench.ratios(runs, "base")
    assert got["base"] == [1.0, 1.0]
    assert got["fast"] == pytest.approx([5.0, 3.0])

