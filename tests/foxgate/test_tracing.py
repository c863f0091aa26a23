"""OpenTelemetry: one trace per task, admission, each upstream attempt and settlement, continuing the caller's
traceparent; configured by the standard OTEL_* variables and exported over OTLP/HTTP."""

import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from foxgate.tracing import span, tracing_start, tracing_use
from tasks.jobs import task_run
from tasks.models import Task
from tasks.services import channel_add
from tests.conftest import free_port

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing_use(provider)
    yield exporter
    tracing_use(None)


@pytest.mark.django_db
def test_a_task_is_one_trace_from_admission_through_each_attempt_to_settlement(
    api, openai_channel, priced_model, spans
):
    # a higher-priority channel that refuses connections: the first attempt fails, the second answers
    channel_add(
        name="down",
        provider="openai",
        base_url=f"http://127.0.0.1:{free_port()}/v1",
        api_key="",
        model_names=[priced_model.name],
        priority=10,
    )
    answer = api.post(
        "/v1/llm/generations",
        {"model": "fake-model", "prompt": "trace me"},
        format="json",
        HTTP_TRACEPARENT=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
    )
    task_id = answer.json()["id"]
    task_run(task_id)

    finished = {s.name: [] for s in spans.get_finished_spans()}
    for finished_span in spans.get_finished_spans():
        finished[finished_span.name].append(finished_span)
    (admission,), (run,), (settlement,) = (
        finished["task admission"],
        finished["task run"],
        finished["settlement"],
    )
    failed, answered = sorted(finished["upstream attempt"], key=lambda s: s.attributes["foxgate.attempt"])
    everything = [admission, run, settlement, failed, answered]
    assert {format(s.context.trace_id, "032x") for s in everything} == {CALLER_TRACE}
    assert format(admission.parent.span_id, "016x") == CALLER_SPAN and admission.parent.is_remote
    assert run.parent.span_id == admission.context.span_id
    assert {s.parent.span_id for s in (failed, answered, settlement)} == {run.context.span_id}

    assert (
        admission.attributes["foxgate.task_id"] == task_id
        and admission.attributes["foxgate.tenant"] == "acme"
    )
    assert admission.attributes["foxgate.request_id"] == answer["X-Request-Id"]
    assert (run.attributes["foxgate.task_id"], run.attributes["foxgate.tenant"]) == (task_id, "acme")
    assert (failed.attributes["foxgate.channel"], answered.attributes["foxgate.channel"]) == ("down", "fake")
    assert answered.attributes["foxgate.outcome"] == "ok" and failed.attributes["foxgate.outcome"] != "ok"
    assert settlement.attributes["foxgate.status"] == "completed"
    charged = Task.objects.get(pk=task_id).credits_charged
    assert charged > 0 and Decimal(settlement.attributes["foxgate.credits_charged"]) == charged


def test_the_otel_environment_sends_spans_over_otlp_http(monkeypatch):
    received: list[tuple[str, str, bytes]] = []
    arrived = threading.Event()

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            arrived.set()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "foxgate-test")
    try:
        provider = tracing_start()
        with span("task run", task_id="task-llmrouter-1-abcdefgh"):
            pass
        provider.force_flush()
        assert arrived.wait(10)
    finally:
        tracing_use(None)
        server.shutdown()
    path, content_type, body = received[0]
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    export = ExportTraceServiceRequest.FromString(body)
    (resource_spans,) = export.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    (exported,) = resource_spans.scope_spans[0].spans
    assert (service, exported.name) == ("foxgate-test", "task run")


def test_tracing_is_off_without_an_otlp_endpoint(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert tracing_start() is None
