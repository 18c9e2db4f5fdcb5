"""Client construction, emulator-aware; build each client once and reuse it.

Firestore: the official client honours ``FIRESTORE_EMULATOR_HOST`` itself (an
insecure channel and no credentials); :func:`firestore_channel` does the same
for code that calls Firestore's gRPC methods itself (the worker's store).
Cloud Tasks has no official emulator, so ``CLOUD_TASKS_EMULATOR_HOST``
(``host:port``) gives the official client an insecure gRPC channel to the local
cloud's emulator; unset, the client talks to Google with Application Default
Credentials.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import google.auth
import grpc
from google.auth.transport import grpc as auth_grpc
from google.auth.transport import requests as auth_requests
from google.cloud import firestore, tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from orders.settings import CloudSettings

FIRESTORE_ENDPOINT = "firestore.googleapis.com:443"
FIRESTORE_SCOPES = (
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/datastore",
)
FIRESTORE_EMULATOR_TOKEN = "owner"  # the bearer token the official client sends: admin
_FIRESTORE_OPTIONS = [  # as the official client's channel: no message size limit
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]
_GRPC_OPTIONS = [
    ("grpc.max_send_message_length", 32 * 1024 * 1024),
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
]


def firestore_client(settings: CloudSettings) -> firestore.Client:
    """Return a Firestore client for the settings' project."""
    return firestore.Client(project=settings.project)


def firestore_channel(
    database_name: str,
    environ: Mapping[str, str],
    options: Sequence[tuple[str, Any]] = (),
) -> tuple[grpc.Channel, tuple[tuple[str, str], ...]]:
    """Return a gRPC channel to Firestore and the metadata every call on it must carry.

    For code that calls Firestore's methods itself, on raw protobuf (the worker's
    store). With ``FIRESTORE_EMULATOR_HOST`` in ``environ`` the channel is insecure
    and every call says it is the emulator's admin, as the official client does.
    Otherwise it is TLS to :data:`FIRESTORE_ENDPOINT` with Application Default
    Credentials, refreshed by google-auth as they expire. Every call carries the
    ``google-cloud-resource-prefix`` of ``database_name``
    (``projects/{p}/databases/{d}``), as the official client's do. ``options`` are
    added to the channel's gRPC options.
    """
    metadata: tuple[tuple[str, str], ...] = (("google-cloud-resource-prefix", database_name),)
    host = environ.get("FIRESTORE_EMULATOR_HOST", "").strip()
    if host:
        channel = grpc.insecure_channel(host, options=[*_FIRESTORE_OPTIONS, *options])
        return channel, (*metadata, ("authorization", f"Bearer {FIRESTORE_EMULATOR_TOKEN}"))
    credentials, _ = google.auth.default(scopes=FIRESTORE_SCOPES)
    channel = auth_grpc.secure_authorized_channel(
        credentials,
        auth_requests.Request(),
        FIRESTORE_ENDPOINT,
        # keepalive as the official client's channel
        options=[*_FIRESTORE_OPTIONS, ("grpc.keepalive_time_ms", 30_000), *options],
    )
    return channel, metadata


def tasks_client(settings: CloudSettings) -> tasks_v2.CloudTasksClient:
    """Return a Cloud Tasks client, bound to the emulator when one is configured."""
    if settings.tasks_emulator_host:
        channel = grpc.insecure_channel(settings.tasks_emulator_host, options=_GRPC_OPTIONS)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    return tasks_v2.CloudTasksClient()
