"""Benchmarks of the prompt methods against PEFT on the same model and batch (``make bench``)."""
