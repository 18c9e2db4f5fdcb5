"""The operators' console: queues, tasks, fan-out runs, dead letters and orders."""
