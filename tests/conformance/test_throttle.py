"""Conformance: 429/5xx answers slow the whole queue; a 4xx such as 409 backs off its task only."""

from __future__ import annotations

from tests.support.builders import http_task
from tests.support.conformance_cloud import Cloud
from tests.support.receiver import Receiver, Reply, wait_for

RATE_PER_S = 50.0


def _enforced_rate(cloud: Cloud, queue_name: str) -> float:
    queue = cloud.beta.get_queue(request={"name": queue_name, "read_mask": {"paths": ["stats"]}})
    return float(queue.stats.effective_execution_rate)


def test_overload_answers_slow_the_queue_and_it_recovers(cloud: Cloud, target: Receiver) -> None:
    queue = cloud.make_queue(max_dispatches_per_second=RATE_PER_S, min_backoff=0.1, max_backoff=0.2)
    target.scripts["/busy"] = [Reply(503)] * 12
    for i in range(6):
        cloud.client.create_task(
            parent=queue.name, task=http_task(f"{queue.name}/tasks/b{i}", target.url("/busy"))
        )
    lowest = RATE_PER_S

    def all_answered_sampling_the_rate() -> bool:
        nonlocal lowest
        lowest = min(lowest, _enforced_rate(cloud, queue.name))
        return len(target.at("/busy")) >= 18

    wait_for(all_answered_sampling_the_rate, cloud.wait_s)
    assert len(target.at("/busy")) == 18, "every task answered 503 twice, then 200"
    assert lowest < RATE_PER_S, "503 answers lowered the enforced rate"
    got = cloud.client.get_queue(name=queue.name)
    assert got.rate_limits.max_dispatches_per_second == RATE_PER_S  # configured: unchanged
    wait_for(lambda: _enforced_rate(cloud, queue.name) == RATE_PER_S, cloud.wait_s)


def test_a_conflict_backs_off_its_task_and_leaves_the_queue_rate(
    cloud: Cloud, target: Receiver
) -> None:
    queue = cloud.make_queue(max_dispatches_per_second=RATE_PER_S, min_backoff=1.0, max_backoff=2.0)
    target.scripts["/held"] = [Reply(409)] * 3
    held = f"{queue.name}/tasks/held"
    cloud.client.create_task(parent=queue.name, task=http_task(held, target.url("/held")))
    wait_for(lambda: len(target.at("/held")) >= 2, cloud.wait_s)
    assert _enforced_rate(cloud, queue.name) == RATE_PER_S
    cloud.client.create_task(parent=queue.name, task=http_task("", target.url("/other")))
    wait_for(lambda: target.at("/other") != [], cloud.wait_s)
    assert len(target.at("/held")) < 4, "the other task went out while the held one backed off"
    wait_for(lambda: len(target.at("/held")) == 4, cloud.wait_s)
    hits = target.at("/held")
    assert [h.headers["x-cloudtasks-taskpreviousresponse"] for h in hits[1:]] == ["409"] * 3
    assert hits[2].at_s - hits[1].at_s >= 2.0 * 0.9  # the task's own backoff: 1, 2, 2 s
    assert _enforced_rate(cloud, queue.name) == RATE_PER_S
