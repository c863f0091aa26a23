"""The PostgreSQL job queue (foxgate/broker.py): no job delivered twice, dispatch on NOTIFY rather than on
a poll, and the jobs of a cluster killed with them in hand back within 30 s."""

import threading

import pytest
from django.db import connections
from django.db.models.functions import Now
from django_q.conf import Conf
from django_q.models import OrmQ

from foxgate.broker import PostgresBroker

KEY = "broker-test"


@pytest.mark.django_db(transaction=True)
def test_two_brokers_claiming_at_once_never_get_the_same_job(monkeypatch):
    monkeypatch.setattr(Conf, "BULK", 7)  # several rows per claim, so a claim that overlapped would show
    monkeypatch.setattr(Conf, "POLL", 0.01)
    queued = {PostgresBroker(KEY).enqueue(f"job {n}") for n in range(600)}
    claimed: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def drain(mine: list[int]) -> None:
        broker = PostgresBroker(KEY)
        start.wait()
        try:
            while OrmQ.objects.filter(key=KEY, lock__lt=Now()).exists():
                mine += [row_id for row_id, _payload in broker.dequeue() or []]
        finally:
            broker.close()
            connections.close_all()

    threads = [threading.Thread(target=drain, args=(mine,)) for mine in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    first, second = claimed
    assert first and second, "both brokers took a share of the queue"
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(queued)  # each job exactly once
