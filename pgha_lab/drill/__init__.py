"""Drills: a fault injected under a steady write load, measured and reconciled into a report.

ledger (the writer and its attempts), sampler (roles, leader key, HAProxy over time), reconcile
(pure detectors over that plain data), scenarios (what each drill breaks and how it heals),
runner (one drill end to end), report and plot (what a DBA reads).
"""
