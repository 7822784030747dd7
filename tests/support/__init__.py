"""Helpers shared by test modules (on sys.path via pytest's ``pythonpath = ["tests"]``)."""
