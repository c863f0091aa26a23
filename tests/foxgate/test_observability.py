import json
import logging

import pytest
from django.test import Client

from foxgate.logs import ContextFilter, JsonFormatter, task_context
from tasks.jobs import task_run


def test_json_log_lines_carry_request_task_and_tenant():
    record = logging.LogRecord("tasks.services", logging.INFO, __file__, 1, "task %s done", ("t1",), None)
    with task_context("task-llmrouter-1-abcdefgh", tenant="acme"):
        ContextFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "task t1 done" and line["level"] == "INFO"
    assert (line["task_id"], line["tenant"]) == ("task-llmrouter-1-abcdefgh", "acme")
    assert "request_id" not in line  # no request around this one


@pytest.mark.django_db
def test_the_worker_logs_each_task_with_its_tenant_and_charge(api, openai_channel, caplog):
    task_id = api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "x"}, format="json").json()[
        "id"
    ]
    caplog.handler.addFilter(ContextFilter())  # as the configured handlers do
    with caplog.at_level(logging.INFO, logger="tasks.services"):
        task_run(task_id)
    (record,) = [r for r in caplog.records if r.getMessage().startswith(f"task {task_id} completed")]
    assert record.task_id == task_id and record.tenant == "acme"
    assert "charged" in record.getMessage() and "provider_usage" in record.getMessage()


@pytest.mark.django_db
def test_metrics_describe_queue_tasks_and_channels(
    api, openai_channel, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):  # the job is queued when the submit commits
        api.post("/v1/llm/generations", {"model": "fake-model", "prompt": "x"}, format="json")
    body = Client().get("/metrics").content.decode()
    assert 'foxgate_tasks_unfinished{status="pending"} 1.0' in body
    assert "foxgate_queue_jobs 1.0" in body
    assert 'foxgate_channel_circuit{channel="fake",state="closed"} 1.0' in body
    assert 'foxgate_channel_enabled{channel="fake"} 1.0' in body

    settings.METRICS_TOKEN = "scrape-me"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200
