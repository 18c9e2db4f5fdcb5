"""Client construction, emulator-aware; build each client once and reuse it.

Firestore: the official client honours ``FIRESTORE_EMULATOR_HOST`` itself (an
insecure channel and no credentials); every Firestore call of the project goes
through that client.
Cloud Tasks has no official emulator, so ``CLOUD_TASKS_EMULATOR_HOST``
(``host:port``) gives the official client an insecure gRPC channel to the local
cloud's emulator; unset, the client talks to Google with Application Default
Credentials. The emulator also serves Cloud Monitoring's ``ListTimeSeries`` for
the queues' attempt counts, so :func:`monitoring_client` follows the same
variable.
"""

from __future__ import annotations

import grpc
from google.cloud import firestore, monitoring_v3, tasks_v2, tasks_v2beta3
from google.cloud.monitoring_v3.services.metric_service.transports import (
    MetricServiceGrpcTransport,
)
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport
from google.cloud.tasks_v2beta3.services.cloud_tasks.transports import (
    CloudTasksGrpcTransport as BetaCloudTasksGrpcTransport,
)

from orders.settings import CloudSettings

_GRPC_OPTIONS = [
    ("grpc.max_send_message_length", 32 * 1024 * 1024),
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
]


def firestore_client(settings: CloudSettings) -> firestore.Client:
    """Return a Firestore client for the settings' project."""
    return firestore.Client(project=settings.project)


def tasks_client(settings: CloudSettings) -> tasks_v2.CloudTasksClient:
    """Return a Cloud Tasks client, bound to the emulator when one is configured."""
    if settings.tasks_emulator_host:
        channel = grpc.insecure_channel(settings.tasks_emulator_host, options=_GRPC_OPTIONS)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    return tasks_v2.CloudTasksClient()


def tasks_stats_client(settings: CloudSettings) -> tasks_v2beta3.CloudTasksClient:
    """Return a v2beta3 Cloud Tasks client, emulator-aware like :func:`tasks_client`.

    Only v2beta3's GetQueue and ListQueues return queue statistics (with a
    ``read_mask`` naming ``stats``); everything else goes through v2.
    """
    if settings.tasks_emulator_host:
        channel = grpc.insecure_channel(settings.tasks_emulator_host, options=_GRPC_OPTIONS)
        return tasks_v2beta3.CloudTasksClient(
            transport=BetaCloudTasksGrpcTransport(channel=channel)
        )
    return tasks_v2beta3.CloudTasksClient()


def monitoring_client(settings: CloudSettings) -> monitoring_v3.MetricServiceClient:
    """Return a Cloud Monitoring metrics client, emulator-aware like :func:`tasks_client`.

    With ``CLOUD_TASKS_EMULATOR_HOST`` set it reads the emulator, which serves
    ``ListTimeSeries`` for ``cloudtasks.googleapis.com/queue/task_attempt_count``.
    """
    if settings.tasks_emulator_host:
        channel = grpc.insecure_channel(settings.tasks_emulator_host, options=_GRPC_OPTIONS)
        return monitoring_v3.MetricServiceClient(
            transport=MetricServiceGrpcTransport(channel=channel)
        )
    return monitoring_v3.MetricServiceClient()
