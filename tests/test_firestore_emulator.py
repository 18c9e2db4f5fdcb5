"""The official Firestore emulator as the local cloud starts it: it leaves nothing behind."""

from __future__ import annotations

import socket

import pytest

from localcloud.errors import EmulatorMissingError
from localcloud.firestore_emulator import INSTALL_HINT, FirestoreEmulator


def listening(host_port: str) -> bool:
    """Tell whether something accepts connections on ``host:port``."""
    host, port = host_port.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1.0).close()
    except OSError:
        return False
    return True


def test_an_emulator_given_no_log_folder_removes_the_one_it_made_when_stopped() -> None:
    emulator = FirestoreEmulator()
    with emulator:
        logs = sorted(path.name for path in emulator.log_folder.iterdir())
        assert logs == ["firestore.log"]
        assert listening(emulator.host_port)
        folder = emulator.log_folder
    assert not folder.exists()
    assert not listening(emulator.host_port)


def test_a_missing_gcloud_says_how_to_install_the_emulator() -> None:
    emulator = FirestoreEmulator(gcloud="no-such-gcloud-here")
    with pytest.raises(EmulatorMissingError) as raised:
        emulator.start()
    assert "'no-such-gcloud-here' is not on PATH" in str(raised.value)
    assert INSTALL_HINT in str(raised.value)
