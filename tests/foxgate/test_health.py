from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_q.models import OrmQ


def test_healthz_answers_without_a_database():
    assert Client().get("/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ready_when_the_queue_moves():
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "workers": "ok"}}


@pytest.mark.django_db
def test_readyz_is_unready_when_no_worker_takes_jobs():
    OrmQ.objects.create(key="foxgate", payload="x", lock=timezone.now() - timedelta(minutes=5))
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["workers"].startswith("queue stalled")
