"""The alerter: risk scores in, deterioration alerts out."""
