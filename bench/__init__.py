"""Benchmarks: this client side by side with what a Python user would write by hand."""
