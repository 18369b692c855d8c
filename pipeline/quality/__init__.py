"""Quality runs as plain Python: test suites, benchmarks and code checks in safe subprocesses.

Every tool runs from an argument list (never a shell) in its own process group and
folder, under a time limit, with its output capped; results are read from the tools'
machine-readable reports. Paths and pytest expressions are checked in ``paths`` first.
"""
