"""The chaos suite: faults injected into the real local cloud, and what must still hold."""
