"""Metrics and task evaluators: exact match, classification metrics, perplexity, ROUGE-L."""
