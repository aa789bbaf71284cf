"""Packaged ``data=`` presets: built-in datasets and hub presets."""
