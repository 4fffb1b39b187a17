"""Backends: where a job's work actually runs."""
