"""Settings from the environment: defaults, and clear errors naming the variable."""

from __future__ import annotations

import pytest

from fanout.config import FanoutConfig
from orders.errors import SettingsError
from orders.settings import CloudSettings
from worker.config import WorkerConfig


def test_defaults_apply_when_nothing_is_set() -> None:
    cloud = CloudSettings.from_env({})
    assert (
        cloud.queue_path == "projects/order-fanout-local/locations/us-central1/queues/order-actions"
    )
    assert cloud.task_url == "http://127.0.0.1:8081/tasks"
    assert cloud.invoker_email == "tasks-invoker@order-fanout-local.iam.gserviceaccount.com"
    assert cloud.tasks_emulator_host == ""
    assert FanoutConfig.from_env({}).page_size == 300
    assert WorkerConfig.from_env({}).max_body_bytes == 65536


def test_variables_override_the_defaults() -> None:
    env = {
        "GOOGLE_CLOUD_PROJECT": "p",
        "TASKS_QUEUE": "q",
        "WORKER_URL": "https://worker.example/",
        "CLOUD_TASKS_EMULATOR_HOST": "127.0.0.1:9",
        "FANOUT_BATCHES_IN_FLIGHT": "3",
    }
    config = FanoutConfig.from_env(env)
    assert config.cloud.queue_path == "projects/p/locations/us-central1/queues/q"
    assert config.cloud.task_url == "https://worker.example/tasks"
    assert config.cloud.invoker_email == "tasks-invoker@p.iam.gserviceaccount.com"
    assert config.batches_in_flight == 3


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FANOUT_PAGE_SIZE": "many"}, "FANOUT_PAGE_SIZE='many' is not a whole number"),
        ({"FANOUT_PAGE_SIZE": "0"}, "FANOUT_PAGE_SIZE=0 is below the minimum 1"),
        ({"WORKER_URL": "worker:8080"}, "WORKER_URL='worker:8080' must start with http"),
        ({"TASKS_DISPATCH_DEADLINE_SECONDS": "10"}, "below the minimum 15"),
        ({"TASKS_DISPATCH_DEADLINE_SECONDS": "3600"}, "exceeds Cloud Tasks' 1800 s maximum"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        FanoutConfig.from_env(env)
