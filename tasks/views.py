"""The public API: one view per operation. Views validate, call a service or selector, and answer;
every failure is raised and turned into the error envelope by foxgate.errors."""

import re
from collections.abc import AsyncIterator
from typing import Any

from adrf.views import APIView as AsyncAPIView
from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from foxgate.errors import (
    InvalidParam,
    NotFound,
    StillRunning,
    TaskAlreadyFinished,
    TaskFailed,
    api_exception_handler,
)
from foxgate.middleware import current_request_id
from foxgate.tracing import SpanKind, remote_parent, span, traceparent_of
from tasks import schema
from tasks.dialects import (
    anthropic_error,
    anthropic_message,
    anthropic_message_events,
    chat_completion_events,
)
from tasks.events import Subscription, connection_release, listener
from tasks.models import Model, Task, new_task_id
from tasks.selectors import models_available, task_as_api, task_get, task_wait
from tasks.serializers import (
    AnthropicMessagesRequestSerializer,
    ChatCompletionRequestSerializer,
    EmbeddingsRequestSerializer,
    GenerationRequestSerializer,
    StrictRequestSerializer,
)
from tasks.services import Admitted, task_submit
from tasks.settle import task_cancel
from tasks.streaming import EventStreamRenderer, stream_check, task_events
from tenants.authentication import AnthropicKeyAuthentication
from tenants.selectors import credits_summary

ERRORS = {
    status: OpenApiResponse(schema.ErrorSchema, description=description)
    for status, description in {
        400: "invalid_json, unsupported_content_type, bad_request",
        401: "missing_api_key, invalid_api_key, expired_api_key",
        402: "insufficient_balance, budget_exceeded",
        403: "model_not_allowed, ip_not_allowed, tenant_suspended",
        404: "task_not_found, stream_not_found",
        409: "task_already_finished",
        410: "stream_expired",
        413: "request_too_large",
        422: "invalid_param, model_not_found, model_rule_violation, invalid_image_url",
        429: "rate_limit_exceeded, concurrency_limit_exceeded, token_limit_exceeded",
        500: "internal_error (the message carries the request id)",
        502: "sync mode: the upstream failed (upstream_error, upstream_rejected, content_filtered)",
        503: "service_unavailable (the database is briefly away: retry after Retry-After seconds), "
        "no_available_channel, all_platforms_exhausted",
        504: "sync mode: upstream_timeout, or task_still_running when the wait ran out",
    }.items()
}


# What tasks.models.new_task_id makes. A path is checked against it before any query: any other
# string (a NUL byte, 10 kB of text) cannot name a task, and must not reach PostgreSQL.
TASK_ID_PATTERN = re.compile(r"task-llmrouter-[0-9]{1,12}-[a-z0-9]{8}")
TASK_ID = OpenApiParameter(
    "task_id",
    str,
    location=OpenApiParameter.PATH,
    pattern=f"^{TASK_ID_PATTERN.pattern}$",
    description="The task's id",
)


IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as Stripe's and the IETF draft's
IDEMPOTENCY_KEY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    location=OpenApiParameter.HEADER,
    required=False,
    pattern=IDEMPOTENCY_KEY.pattern,
    description="The same key within 24 hours answers the first request's task, with no second hold or "
    "upstream call; with another request it is 422 idempotency_key_reused.",
)


def task_id_checked(task_id: str) -> str:
    if not TASK_ID_PATTERN.fullmatch(task_id):
        raise NotFound("No task with this id exists for this API key's tenant.", code="task_not_found")
    return task_id


# What any operation may answer: a malformed request or Host, a missing, bad or IP-refused key, a body
# over the size cap, a fault, the database away.
EVERY_OPERATION = (400, 401, 403, 413, 500, 503)


def errors(*statuses: int) -> dict[tuple[int, str], OpenApiResponse]:
    # Always JSON, even where the success is an event stream (foxgate.errors answers JSON whatever
    # the client accepts).
    return {(status, "application/json"): ERRORS[status] for status in sorted({*EVERY_OPERATION, *statuses})}


class OneHopApi(AsyncAPIView):
    """An async API view whose database work, authentication included, runs in one thread hop of its
    own, and whose answer Django sends without one.

    adrf runs `initial` (authentication, permissions, throttles) in a thread hop before the handler,
    and Django renders a DRF Response in another: here the handler runs `initial` in its own hop, and
    the Response is rendered on the event loop (JSON, no I/O) into a plain HttpResponse, which Django
    does not render again."""

    async def async_dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        handler = getattr(self, request.method.lower(), None) if request.method else None
        if not iscoroutinefunction(handler):  # OPTIONS, or a method the view does not take: adrf's way
            return await super().async_dispatch(request, *args, **kwargs)
        self.args, self.kwargs = args, kwargs
        request = self.request = self.initialize_request(request, *args, **kwargs)
        self.headers = self.default_response_headers
        try:
            response = await handler(request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = rendered(self.finalize_response(request, response, *args, **kwargs))
        return self.response


def rendered(response: HttpResponseBase) -> HttpResponseBase:
    if not isinstance(response, Response):
        return response  # a stream, or already plain
    response.render()
    return HttpResponse(response.content, status=response.status_code, headers=response.headers)


class GenerationCreateApi(OneHopApi):
    renderer_classes = (JSONRenderer, EventStreamRenderer)  # sync streams answer text/event-stream
    request_serializer: type[StrictRequestSerializer] = GenerationRequestSerializer
    dialect = "foxapi"

    @extend_schema(
        operation_id="generation_create",
        parameters=[IDEMPOTENCY_KEY_HEADER],
        summary="Submit a generation",
        description="Async mode answers the task object at once; sync mode waits and answers the bare "
        "ChatCompletion, with the task id in X-Task-Id.",
        request=GenerationRequestSerializer,
        responses={
            (200, "application/json"): OpenApiResponse(
                PolymorphicProxySerializer(
                    component_name="GenerationResult",
                    serializers=[schema.TaskSchema, schema.ChatCompletionSchema],
                    resource_type_field_name=None,
                ),
                description="The task (async) or a ChatCompletion (sync)",
            ),
            (200, "text/event-stream"): OpenApiResponse(
                schema.EVENT_STREAM_SCHEMA, description="sync mode with stream: the task's events"
            ),
            **errors(402, 422, 429, 502, 504),
        },
    )
    async def post(self, request: Request) -> Response:
        # The id is made here, and its events listened for, before the task exists: a sync request then
        # cannot miss its task's end, and needs no read until it is announced.
        task_id = new_task_id()
        async with listener().subscribe(task_id, wait=False) as heard:
            admitted = await sync_to_async(self.admit)(request, task_id)
            if admitted.task.id == task_id:
                return await self.answered(admitted, heard)
        # An Idempotency-Key's replay: the first request's task, which may have finished long ago
        async with listener().subscribe(admitted.task.id, wait=False) as replayed:
            replayed.changed = True  # so the wait reads it at once
            return await self.answered(admitted, replayed)

    async def answered(self, admitted: Admitted, heard: Subscription) -> Response:
        """The admitted task as this endpoint answers it: the task object (async), its stream, or its
        result once it has finished (sync)."""
        task = admitted.task
        headers = {"X-Task-Id": task.id, **admitted.headers}
        if not task.sync:
            return Response(task_as_api(task), headers=headers)
        if task.stream:
            return event_stream(self.events(task.id), headers=headers)
        # The task runs in the worker cluster whatever happens here: if this client goes away, the
        # wait is cancelled and the result stays available from GET /v1/tasks/{id}.
        outcome = await task_wait(task_id=task.id, heard=heard, timeout=settings.SYNC_WAIT_SECONDS)
        if outcome.status == Task.Status.COMPLETED:
            return Response(self.answer(task.id, outcome.result), headers=headers)
        error = (
            TaskFailed(outcome.error_code, outcome.error_message)
            if outcome.status in (Task.Status.FAILED, Task.Status.CANCELLED)
            else StillRunning(
                f"The task is still running after {settings.SYNC_WAIT_SECONDS:g}s; "
                f"poll GET /v1/tasks/{task.id} for its result."
            )
        )
        response = self.handle_exception(error)
        for header, value in headers.items():
            response[header] = value
        return response

    def admit(self, request: Request, task_id: str) -> Admitted:
        """Authentication, validation and admission in one thread hop, the connection back in the pool
        at its end (a sync request then waits without one)."""
        caller = remote_parent(request.headers)
        try:
            with span("task admission", parent=caller, kind=SpanKind.SERVER, task_id=task_id) as admission:
                admission.set_attribute("foxgate.request_id", current_request_id())
                self.initial(request)
                admission.set_attribute("foxgate.tenant", request.auth.slug)
                serializer = self.request_serializer(data=request.data)
                serializer.is_valid(raise_exception=True)
                self.validated = serializer.validated_data
                return task_submit(
                    api_key=request.user,
                    validated=self.validated,
                    task_id=task_id,
                    dialect=self.dialect,
                    idempotency_key=idempotency_key(request),
                    traceparent=traceparent_of(admission),
                )
        finally:
            connection_release()

    def events(self, task_id: str) -> AsyncIterator[str]:
        """The sync stream's events, as this dialect streams."""
        return task_events(task_id, offset=0)

    def answer(self, task_id: str, completion: dict[str, Any]) -> dict[str, Any]:
        """A sync answer, as this dialect answers: the task's ChatCompletion itself."""
        return completion


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.match(key):
        raise InvalidParam(
            "Idempotency-Key must be 1 to 255 visible ASCII characters", param="Idempotency-Key"
        )
    return key


class ChatCompletionCreateApi(GenerationCreateApi):
    """POST /v1/chat/completions: a generation in sync mode, asked and answered in OpenAI's format."""

    request_serializer = ChatCompletionRequestSerializer
    dialect = "openai"

    @extend_schema(
        operation_id="chat_completion_create",
        parameters=[IDEMPOTENCY_KEY_HEADER],
        summary="Create a chat completion (OpenAI's Chat Completions)",
        description="OpenAI's request and answer: the ChatCompletion, or with `stream: true` its chunks as "
        "`data:` lines ending with `data: [DONE]`. Every request is a task, its id in X-Task-Id.",
        request=ChatCompletionRequestSerializer,
        responses={
            (200, "application/json"): schema.ChatCompletionSchema,
            (200, "text/event-stream"): OpenApiResponse(
                schema.CHAT_EVENT_STREAM_SCHEMA, description="with stream: the completion's chunks"
            ),
            **errors(402, 422, 429, 502, 504),
        },
    )
    async def post(self, request: Request) -> Response:
        return await super().post(request)

    def events(self, task_id: str) -> AsyncIterator[str]:
        return chat_completion_events(task_id, include_usage=self.validated["include_usage"])


class EmbeddingsCreateApi(GenerationCreateApi):
    """POST /v1/embeddings: a task of an embedding model in sync mode, in OpenAI's format."""

    request_serializer = EmbeddingsRequestSerializer
    dialect = "openai"

    @extend_schema(
        operation_id="embeddings_create",
        parameters=[IDEMPOTENCY_KEY_HEADER],
        summary="Create embeddings (OpenAI's Embeddings)",
        description="OpenAI's request and answer, served by channels of an embedding model and priced per "
        "input token. Every request is a task, its id in X-Task-Id.",
        request=EmbeddingsRequestSerializer,
        responses={(200, "application/json"): schema.EmbeddingsSchema, **errors(402, 422, 429, 502, 504)},
    )
    async def post(self, request: Request) -> Response:
        return await super().post(request)


def anthropic_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """The API's error handling, its envelope rewritten as Anthropic's error body."""
    response = api_exception_handler(exc, context)
    response.data = anthropic_error(response.status_code, response.data["error"]["message"])
    return response


def anthropic_errors(*statuses: int) -> dict[tuple[int, str], OpenApiResponse]:
    return {
        key: OpenApiResponse(schema.AnthropicErrorSchema, description=response.description)
        for key, response in errors(*statuses).items()
    }


class MessageCreateApi(GenerationCreateApi):
    """POST /v1/messages: a generation in sync mode, asked and answered in Anthropic's Messages format,
    with Anthropic's error body; the key comes as `x-api-key` or Bearer."""

    authentication_classes = (AnthropicKeyAuthentication,)
    request_serializer = AnthropicMessagesRequestSerializer
    dialect = "anthropic"

    @extend_schema(
        operation_id="message_create",
        parameters=[IDEMPOTENCY_KEY_HEADER],
        summary="Create a message (Anthropic's Messages)",
        description="Anthropic's request and answer: the Message, or with `stream: true` its events "
        "(message_start ... message_stop). Errors in Anthropic's body. Every request is a task, its id in "
        "X-Task-Id.",
        request=AnthropicMessagesRequestSerializer,
        responses={
            (200, "application/json"): OpenApiResponse(
                schema.ANTHROPIC_MESSAGE_SCHEMA, description="The Message"
            ),
            (200, "text/event-stream"): OpenApiResponse(
                schema.ANTHROPIC_EVENT_STREAM_SCHEMA, description="with stream: the Message's events"
            ),
            **anthropic_errors(402, 422, 429, 502, 504),
        },
    )
    async def post(self, request: Request) -> Response:
        return await super().post(request)

    def events(self, task_id: str) -> AsyncIterator[str]:
        return anthropic_message_events(task_id, model=self.validated["model"])

    def answer(self, task_id: str, completion: dict[str, Any]) -> dict[str, Any]:
        return anthropic_message(completion, task_id=task_id, model=self.validated["model"])

    def get_exception_handler(self) -> Any:
        return anthropic_exception_handler


class GenerationStreamApi(AsyncAPIView):
    renderer_classes = (JSONRenderer, EventStreamRenderer)

    @extend_schema(
        operation_id="generation_stream",
        summary="Stream a task's chunks as server-sent events",
        description="`chunk` events (OpenAI chat.completion.chunk, with `id:` lines), then `done` "
        '(`{"total_chunks": N}`) or `error` (`{"message", "code"}`). Resume with `?offset=N` or '
        "`Last-Event-ID`. Keep-alive comments while the upstream is silent.",
        parameters=[
            TASK_ID,
            OpenApiParameter(
                "offset", {"type": "integer", "minimum": 0}, description="the first chunk to send (default 0)"
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                schema.EVENT_STREAM_SCHEMA, description="the event stream"
            ),
            **errors(404, 410, 422),
        },
    )
    async def get(self, request: Request, task_id: str) -> StreamingHttpResponse:
        task = await sync_to_async(task_get)(tenant=request.auth, task_id=task_id_checked(task_id))
        stream_check(task)
        return event_stream(task_events(task.id, offset=stream_offset(request)))


def stream_offset(request: Request) -> int:
    """Where a client resumes: `?offset=N` (the next chunk it wants), else `Last-Event-ID` + 1."""
    offset = request.query_params.get("offset")
    if offset is not None:
        if not offset.isdigit():
            raise InvalidParam("offset must be a whole number of chunks", param="offset")
        return int(offset)
    last_seen = request.headers.get("Last-Event-ID", "")
    if last_seen:
        if not last_seen.isdigit():
            raise InvalidParam("Last-Event-ID must be the id of a chunk event", param="Last-Event-ID")
        return int(last_seen) + 1
    return 0


def event_stream(
    events: AsyncIterator[str], *, headers: dict[str, str] | None = None
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    # No caching, and no buffering by nginx-style proxies: each event must go out as it is written.
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    for header, value in (headers or {}).items():
        response[header] = value
    return response


class TaskDetailApi(OneHopApi):
    @extend_schema(
        operation_id="task_get",
        summary="Get a task",
        parameters=[TASK_ID],
        responses={(200, "application/json"): schema.TaskSchema, **errors(404)},
    )
    async def get(self, request: Request, task_id: str) -> Response:
        return Response(task_as_api(await sync_to_async(self.lookup)(request, task_id)))

    def lookup(self, request: Request, task_id: str) -> Task:
        """Authentication and the read in one thread hop, the connection back in the pool at its end."""
        try:
            self.initial(request)
            return task_get(tenant=request.auth, task_id=task_id_checked(task_id))
        finally:
            connection_release()


class TaskCancelApi(OneHopApi):
    # How long the answer waits for the worker of a processing task to stop its call and settle it: it
    # hears the request at once (a notification), or at its next lease renewal if it missed that.
    WAIT_SECONDS = 10

    @extend_schema(
        operation_id="task_cancel",
        summary="Cancel a task",
        description="A pending task is cancelled at once and its whole hold released. A processing one "
        "has its upstream call stopped, is charged what the provider reported or else what was delivered, "
        "and the rest of its hold is released; its streams end with an `error` event and a sync request "
        "waiting for it answers `cancelled`. The answer is the cancelled task (200), or, if its worker "
        "has not settled it within a few seconds, the task still processing (202) with the cancel under "
        "way. A finished task is 409 task_already_finished.",
        request=None,
        parameters=[TASK_ID],
        responses={
            (200, "application/json"): schema.TaskSchema,
            (202, "application/json"): schema.TaskSchema,
            **errors(404, 409),
        },
    )
    async def post(self, request: Request, task_id: str) -> Response:
        task_id = task_id_checked(task_id)
        # Listening before the request is made: the worker's settlement cannot go unheard.
        async with listener().subscribe(task_id) as heard:
            task, cancelled = await sync_to_async(self.cancel)(request, task_id)
            if cancelled:
                return Response(task_as_api(task))
            await task_wait(task_id=task_id, heard=heard, timeout=self.WAIT_SECONDS)
        task = await sync_to_async(self.reread)(task)
        if task.status == Task.Status.PROCESSING:
            return Response(task_as_api(task), status=202)
        if task.status != Task.Status.CANCELLED:  # it finished before the worker heard the request
            raise TaskAlreadyFinished(
                f"Task {task.id} finished ({task.status}) before it could be cancelled."
            )
        return Response(task_as_api(task))

    def cancel(self, request: Request, task_id: str) -> tuple[Task, bool]:
        try:
            self.initial(request)
            task = task_get(tenant=request.auth, task_id=task_id)
            return task, task_cancel(task, by=f"API key {request.user.key_id}")
        finally:
            connection_release()

    def reread(self, task: Task) -> Task:
        try:
            task.refresh_from_db()
            return task
        finally:
            connection_release()


class GenerationModelListApi(APIView):
    @extend_schema(
        operation_id="generation_models",
        summary="Models this key may use, with capabilities",
        responses={(200, "application/json"): schema.ModelListSchema, **errors()},
    )
    def get(self, request: Request) -> Response:
        models = [
            {
                "id": model.name,
                "object": "model",
                "created": int(model.created_at.timestamp()),
                "owned_by": "foxgate",
                # an embedding model embeds; the chat rules say nothing of it
                "capabilities": ["embeddings"] if model.kind == Model.Kind.EMBEDDING else rules.capabilities,
            }
            for model, rules in models_available(api_key=request.user)
        ]
        return Response({"object": "list", "data": models})


@extend_schema_view(
    get=extend_schema(
        operation_id="models_list",
        summary="Models this key may use, in OpenAI's list format",
        responses={(200, "application/json"): schema.ModelListSchema, **errors()},
    )
)
class ModelListApi(GenerationModelListApi):
    """The same set under OpenAI's path, for clients that call `GET /v1/models`."""


class AccountCreditsApi(APIView):
    @extend_schema(
        operation_id="account_credits",
        summary="Balance, holds and this period's spend of the key's tenant and of the key",
        responses={(200, "application/json"): schema.CreditsSchema, **errors()},
    )
    def get(self, request: Request) -> Response:
        return Response(credits_summary(api_key=request.user))


class RouteNotFoundApi(APIView):
    """Any other path under /v1/: a 404 in the error envelope, whatever the method or key."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    schema = None

    def initial(self, request: Request, *args, **kwargs) -> None:
        raise NotFound(f"There is no route {request.method} {request.path}.")
