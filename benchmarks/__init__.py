"""rillet's benchmarks: the engine measured side by side with its references.

Run ``python -m benchmarks [--quick] [--only NAME ...] [--backend trio|asyncio|both]``.
Every scenario runs rillet (on trio and on asyncio) and its references (hand-written
pipelines, langchain-core) in the same process run, alternating, several repetitions,
and reports medians, min/max and ratios; ``benchmarks/RESULTS.md`` is regenerated from
the run. Nothing here is part of the test suite.

``python -m benchmarks.instructions`` counts the CPU instructions one more chunk costs
(valgrind's callgrind): figures the machine's load cannot move, for comparing changes
to the per-chunk path.

Layout: ``_harness`` (alternating runs, statistics, report tables), ``_chains`` (the
chains under test, on both sides), ``_handwritten`` (reference pipelines on bare
channels), ``_worker`` (the subprocess used for peak-RSS measurements), ``bench_*``
(one module per scenario), ``_cli`` (the command line and RESULTS.md).
"""
