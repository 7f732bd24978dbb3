"""Decide when held work goes to the workers: used by the web (after a batch), workers and beat."""
