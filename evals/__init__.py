"""Offline evaluation over recorded incidents: case format, corpus, runner, scorer, closed loop, report, gate.

See README.md beside this file; `payops eval` is the entry point.
"""
