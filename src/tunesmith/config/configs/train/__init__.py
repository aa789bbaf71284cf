"""Packaged ``train=`` presets: optimisation settings."""
