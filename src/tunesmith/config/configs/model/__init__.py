"""Packaged ``model=`` presets: the packaged models."""
