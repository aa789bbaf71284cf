"""Model loading, precision choice and adapters."""
