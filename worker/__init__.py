"""The worker service: performs one action of one order per Cloud Tasks delivery."""
