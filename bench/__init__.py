"""Benchmarks of writeback: latency, throughput, EHR rate limits, outage drain.

``python -m bench`` runs them all (``--quick`` for a smoke run); ``python -m bench.latency`` etc.
run one. Every figure is printed next to a baseline measured in the same run (see README.md).
"""
