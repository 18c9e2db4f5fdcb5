"""Shared core of order-fanout: order schema, task contract, settings and clients.

Both services (``fanout`` and ``worker``) and the local cloud import this package;
it imports nothing of theirs, only Google's libraries.
"""
