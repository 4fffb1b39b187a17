"""Speed and scale benchmarks of awsjobs-lab, side by side with jupyter-scheduler.

Run `python -m benchmarks` from the repository root (with the repo's venv). It prints a table
and writes `benchmarks/RESULTS.md`. These are measurements, not tests: nothing here asserts.
"""
