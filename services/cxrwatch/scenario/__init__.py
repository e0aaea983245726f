"""The sample scenario: a few patients over a few days, in real formats."""
