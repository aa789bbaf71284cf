"""The ``tunesmith`` command line: argument parsing and printing; the work is done by ``tunesmith.api``."""
