"""The early order read is the first attempt of a retried read, on the real emulator."""

from __future__ import annotations

import collections
from typing import Any

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type
from google.cloud import firestore

from orders.clients import FIRESTORE_EMULATOR_TOKEN
from worker.firestore_rpc import FirestoreRpc


class _Details(
    collections.namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class TooHurriedFirst(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Gives the first call a deadline it cannot meet; counts the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            details = _Details(
                details.method,
                1e-6,
                details.metadata,
                details.credentials,
                details.wait_for_ready,
                details.compression,
            )
        return continuation(details, request)


def rpc_through(
    firestore_emulator: str, project: str, interceptor: TooHurriedFirst, retried: type
) -> FirestoreRpc:
    database = f"projects/{project}/databases/(default)"
    channel = grpc.intercept_channel(grpc.insecure_channel(firestore_emulator), interceptor)
    retry = Retry(predicate=if_exception_type(retried), initial=0.01, maximum=0.05, timeout=10)
    metadata = (("authorization", f"Bearer {FIRESTORE_EMULATOR_TOKEN}"),)
    return FirestoreRpc(channel, database, metadata, {"retry": retry, "timeout": 10.0})


@pytest.mark.parametrize("retried", [gexc.DeadlineExceeded, gexc.ServiceUnavailable])
def test_a_failed_early_read_is_retried_only_as_the_retry_says(
    firestore_emulator: str, project: str, db: firestore.Client, retried: type
) -> None:
    db.document("orders/o1").set({"status": "pending"})
    interceptor = TooHurriedFirst()
    calls = rpc_through(firestore_emulator, project, interceptor, retried)
    answer = calls.get_document_later(f"projects/{project}/databases/(default)/documents/orders/o1")
    if retried is gexc.DeadlineExceeded:
        assert answer().fields["status"].string_value == "pending"
        assert interceptor.calls == 2  # the started read failed, one more was made
    else:
        with pytest.raises(gexc.DeadlineExceeded):
            answer()
        assert interceptor.calls == 1  # an error the retry does not retry is raised at once
    calls.close()
