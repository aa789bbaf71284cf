"""The data layer: sources -> canonical examples -> token ids and labels -> batches."""
