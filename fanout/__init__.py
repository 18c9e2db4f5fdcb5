"""The fanout service: turns pending orders into named Cloud Tasks tasks, in bulk."""
