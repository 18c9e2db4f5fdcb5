"""Read one document with Firestore's unary ``GetDocument`` call.

``DocumentReference.get`` asks with ``BatchGetDocuments``, a server-streaming
call: in grpcio's synchronous API every streaming call goes through the
channel's polling thread and a condition variable, which under 32 concurrent
deliveries costs more CPU and waits longer for the GIL than a unary call, which
blocks in C on its own completion queue. The worker reads each order once per
delivery, so it reads it with ``GetDocument``, through the same client (same
channel, credentials and emulator settings), and gets the same snapshot.
"""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.base_document import DocumentSnapshot


def get_document(
    client: firestore.Client, ref: firestore.DocumentReference, rpc: dict[str, Any]
) -> DocumentSnapshot:
    """Return ``ref``'s snapshot (``exists`` False when there is none), in one unary call.

    ``rpc`` holds the call's retry and timeout. Other failures raise as the
    client's own calls do (``google.api_core.exceptions``).
    """
    api = client._firestore_api
    try:
        document = api.get_document(
            request={"name": ref._document_path}, metadata=client._rpc_metadata, **rpc
        )
    except gexc.NotFound:
        return DocumentSnapshot(
            ref, None, exists=False, read_time=None, create_time=None, update_time=None
        )
    return DocumentSnapshot(
        ref,
        _helpers.decode_dict(document.fields, client),
        exists=True,
        read_time=None,
        create_time=document.create_time,
        update_time=document.update_time,
    )
