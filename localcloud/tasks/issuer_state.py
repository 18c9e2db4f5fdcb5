"""The emulator's own OIDC issuer, kept in its state so that a restart changes no token.

Google's signing keys do not change when a queue's server restarts, so a worker
that trusts the emulator's issuer must keep trusting it after the emulator
restarts on the same database: the signing key, and the issuer's port (its URL
is the tokens' ``iss`` and the worker's certs URL), are stored with the queues.
"""

from __future__ import annotations

import logging

from localcloud.oidc import LocalIssuer
from localcloud.tasks.task_store import TaskStore

log = logging.getLogger(__name__)

KEY_SETTING = "oidc.private_key_pem"
PORT_SETTING = "oidc.port"
ANY_PORT = 0


def start_kept_issuer(store: TaskStore, host: str, port: int = ANY_PORT) -> LocalIssuer:
    """Start an issuer with the key kept in ``store`` (made and kept on first use).

    ``port`` 0 means the port the issuer had last time, when it is free (else a
    free one, with a warning: tokens stay verifiable, but the issuer URL changes);
    any other ``port`` is bound as given (OSError when it is taken).
    """
    key = store.get_setting(KEY_SETTING)
    kept_port = store.get_setting(PORT_SETTING)
    wanted = port or (int(kept_port) if kept_port else ANY_PORT)
    issuer = LocalIssuer(host, wanted, key_pem=key)
    try:
        issuer.start()
    except OSError:
        if port or not wanted:
            raise
        log.warning(
            "the OIDC issuer's port %s is taken; using a free one, so its URL changes "
            "(give --issuer-port to keep it fixed)",
            wanted,
        )
        issuer = LocalIssuer(host, ANY_PORT, key_pem=issuer.private_key_pem)
        issuer.start()
    if key is None:
        store.put_setting(KEY_SETTING, issuer.private_key_pem)
    store.put_setting(PORT_SETTING, str(issuer.port).encode())
    return issuer
