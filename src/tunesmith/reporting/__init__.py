"""Pictures and reports of a run: loss and learning-rate curves, the HTML report."""
