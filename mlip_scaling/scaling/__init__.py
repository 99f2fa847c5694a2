"""Scaling studies: sweeps, evaluation, downstream tasks, fits, report."""
