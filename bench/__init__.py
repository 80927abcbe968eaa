"""Benchmarks of plantcore's hot paths, each against the raw library it is built on.

Every benchmark measures plantcore and the bare library in the same run, on the
same machine and services, and reports the ratio plantcore/raw; absolute
figures only mean something next to the machine they were taken on. Run them
with ``python -m bench`` (``--quick`` for a short run, ``--only NAME``); see
``docs/performance.md``. Speed is measured here, never asserted in tests.
"""
