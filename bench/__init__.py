"""Benchmark suite: the speed and cost of every step, each measured beside its reference in the same run.

    make bench                  every section (python -m bench)
    python -m bench SECTION     detector, miaod, scoring, evaluation, mgral, end_to_end, scaling, reference
    python -m bench --quick     tiny sizes, one repeat: checks the suite runs (tests/test_bench.py)

One module per section; ``common`` holds the run context, timing, rows and the CSV
(results/bench/bench.csv), ``data`` the inputs (generated scenes, derived pools, trained models).
"""
