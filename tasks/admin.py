"""Admin pages of the catalog, channels and task history, and the usage and failures dashboards."""

import json
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Avg, Count, FilteredRelation, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django_q.tasks import async_task
from unfold.admin import TabularInline
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminPasswordWidget

from foxgate.errors import ApiError, TaskAlreadyFinished
from tasks.dashboards import failures_dashboard, usage_dashboard
from tasks.models import CallbackDelivery, Channel, Model, Price, Task, TaskAttempt
from tasks.retention import is_sealed
from tasks.serializers import is_inline
from tasks.services import (
    CHANNEL_FIELDS,
    MODEL_FIELDS,
    channel_add,
    channel_update,
    model_add,
    model_update,
    price_set,
    task_submit,
)
from tasks.settle import task_cancel
from tenants.access import Perm, PlatformAdmin, can_any, is_platform, scope
from tenants.admin import BigTableAdmin, admin_actor, form_values
from tenants.models import ApiKey, Tenant

ERROR_CODES = (
    "upstream_error",
    "upstream_timeout",
    "upstream_rejected",
    "all_platforms_exhausted",
    "content_filtered",
    "internal_error",
)


class PriceHistory(TabularInline):
    model = Price
    fields = (
        "group",
        "version",
        "input_per_million",
        "cached_input_per_million",
        "cache_write_per_million",
        "cache_write_1h_per_million",
        "output_per_million",
        "created_at",
    )
    readonly_fields = fields
    ordering = ("group", "-version")
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Model)
class CatalogModelAdmin(PlatformAdmin):
    list_display = ("name", "kind", "capabilities", "max_output_tokens", "enabled", "current_price_text")
    list_filter = ("enabled", "kind")
    search_fields = ("name",)
    inlines = (PriceHistory,)

    @display(description="price (in / out per M)")
    def current_price_text(self, obj: Model) -> str:
        price = obj.current_price()
        return (
            f"v{price.version}: {price.input_per_million} / {price.output_per_million}"
            if price
            else "no price"
        )

    def save_model(self, request: HttpRequest, obj: Model, form, change: bool) -> None:
        values = form_values(form, MODEL_FIELDS)
        if change:
            model_update(model=obj, actor=admin_actor(request), **values)
            return
        obj.pk = model_add(actor=admin_actor(request), **values).pk


@admin.register(Price)
class PriceAdmin(PlatformAdmin):
    """New price versions; existing ones are history and never change."""

    list_display = (
        "model",
        "group",
        "version",
        "input_per_million",
        "cached_input_per_million",
        "cache_write_per_million",
        "cache_write_1h_per_million",
        "output_per_million",
        "created_at",
    )
    list_filter = ("group",)
    search_fields = ("model__name",)
    fields = (
        "model",
        "group",
        "input_per_million",
        "cached_input_per_million",
        "cache_write_per_million",
        "cache_write_1h_per_million",
        "output_per_million",
    )
    ordering = ("model__name", "group", "-version")

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return obj is None and is_platform(request.user)

    def save_model(self, request: HttpRequest, obj: Price, form, change: bool) -> None:
        data = form.cleaned_data
        saved = price_set(
            model_name=data["model"].name,
            group=data["group"],
            input_per_million=data["input_per_million"],
            cached_input_per_million=data["cached_input_per_million"],
            cache_write_per_million=data["cache_write_per_million"],
            cache_write_1h_per_million=data["cache_write_1h_per_million"],
            output_per_million=data["output_per_million"],
            actor=admin_actor(request),
        )
        obj.pk = saved.pk


class ChannelForm(forms.ModelForm):
    """The upstream key is write-only: it is never sent back to the browser; blank keeps the stored one."""

    new_api_key = forms.CharField(
        label="API key",
        required=False,
        widget=UnfoldAdminPasswordWidget(render_value=False),
        help_text="Stored encrypted. Leave blank to keep the current key.",
    )

    class Meta:
        model = Channel
        fields = (
            "name",
            "provider",
            "base_url",
            "served_models",
            "model_mapping",
            "priority",
            "weight",
            "timeout_seconds",
            "max_concurrency",
            "enabled",
        )


@admin.register(Channel)
class ChannelAdmin(PlatformAdmin):
    form = ChannelForm
    list_display = (
        "name",
        "provider",
        "enabled",
        "priority",
        "weight",
        "circuit",
        "error_rate",
        "latency",
        "reason",
        "probe",
        "probed_at",
    )
    list_filter = ("provider", "enabled", "circuit_state")
    search_fields = ("name",)
    filter_horizontal = ("served_models",)
    readonly_fields = (
        "circuit_state",
        "circuit_open_until",
        "circuit_reason",
        "disabled_reason",
        "probe",
        "probe_result",
    )
    actions_detail = ("test_connection",)
    HEALTH_WINDOW = timedelta(hours=1)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The window is part of the join, so the (channel, started_at) index bounds the scan to the hour.
        window = Q(
            attempts__started_at__gte=timezone.now() - self.HEALTH_WINDOW, attempts__finished_at__isnull=False
        )
        return (
            super()
            .get_queryset(request)
            .annotate(recent=FilteredRelation("attempts", condition=window))
            .annotate(
                recent_calls=Count("recent"),
                recent_failures=Count("recent", filter=~Q(recent__error_code="")),
                recent_latency=Avg("recent__latency_ms"),
            )
        )

    def save_model(self, request: HttpRequest, obj: Channel, form, change: bool) -> None:
        """Through the channel services: a full-row save would write back the breaker state as the form
        loaded it, undoing what the workers decided meanwhile."""
        values = form_values(form, CHANNEL_FIELDS)
        models = list(form.cleaned_data["served_models"])
        if form.cleaned_data["new_api_key"]:
            values["api_key"] = form.cleaned_data["new_api_key"]  # blank keeps the stored key
        if change:
            channel_update(channel=obj, actor=admin_actor(request), served_models=models, **values)
            return
        created = channel_add(
            model_names=[model.name for model in models],
            actor=admin_actor(request),
            api_key=values.pop("api_key", ""),
            **values,
        )
        obj.pk = created.pk

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        """Served models were saved (and audited) by save_model."""

    @display(description="circuit", label={"closed": "success", "open": "danger", "half_open": "warning"})
    def circuit(self, obj: Channel) -> str:
        return obj.circuit_state

    @display(description="errors (1 h)")
    def error_rate(self, obj: Channel) -> str:
        if not obj.recent_calls:
            return "—"
        return f"{100 * obj.recent_failures / obj.recent_calls:.0f}% of {obj.recent_calls}"

    @display(description="latency (1 h)")
    def latency(self, obj: Channel) -> str:
        return f"{obj.recent_latency:.0f} ms" if obj.recent_latency is not None else "—"

    @display(description="why")
    def reason(self, obj: Channel) -> str:
        return obj.disabled_reason or obj.circuit_reason or ""

    @display(description="last probe", label={"ok": "success", "failed": "danger", "pending": "warning"})
    def probe(self, obj: Channel) -> str:
        if obj.probe_pending:
            return "pending"
        if obj.probe_ok is None:
            return "—"
        return "ok" if obj.probe_ok else "failed"

    @display(description="probed")
    def probed_at(self, obj: Channel) -> str:
        when = obj.probe_requested_at if obj.probe_pending else obj.probe_finished_at
        return f"{when:%Y-%m-%d %H:%M:%S} UTC" if when else "—"

    @display(description="probe result")
    def probe_result(self, obj: Channel) -> str:
        if obj.probe_pending:
            return f"pending since {obj.probe_requested_at:%Y-%m-%d %H:%M:%S} UTC: queued for the cluster"
        if obj.probe_finished_at is None:
            return "never tested"
        return f"{obj.probe_message} ({obj.probe_finished_at:%Y-%m-%d %H:%M:%S} UTC)"

    @action(description="Test connection", url_path="test-connection", permissions=["change"])
    def test_connection(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET asks to confirm; the POST records the request and queues the probe for the cluster, which
        alone calls providers (tasks/relay/probe.py). The page shows "pending" until the result lands."""
        channel = get_object_or_404(Channel, pk=object_id)
        if request.method != "POST":
            frame = {**self.admin_site.each_context(request), "title": f"Test {channel}", "opts": self.opts}
            return TemplateResponse(request, "admin/tasks/channel_probe.html", {**frame, "channel": channel})
        with transaction.atomic():
            # Only this column: a full save would write back the breaker state as this request read it.
            Channel.objects.filter(pk=channel.pk).update(probe_requested_at=timezone.now())
            # By dotted path, so the web process never imports the relay; after commit, so the job reads the
            # request time it must answer.
            transaction.on_commit(lambda: async_task("tasks.jobs.channel_probe_job", channel.pk))
        self.message_user(request, f"Testing {channel.name}: the result appears here in a moment.")
        return redirect("admin:tasks_channel_change", object_id)


class ExactFilter(admin.SimpleListFilter):
    """A filter on one indexed column, whose choices come from a small table, never from a DISTINCT over
    millions of tasks. Subclasses name the column and list the choices the user may see."""

    field = ""

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(**{self.field: self.value()}) if self.value() else queryset


class TenantFilter(ExactFilter):
    title = "tenant"
    parameter_name = "tenant"
    field = "tenant_id"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[Any, str]]:
        # the tenants whose rows this page shows: the choices never name a tenant the list would hide
        tenants = scope(Tenant.objects.order_by("slug"), request.user, model_admin.read_perm, "pk")
        return [(t.pk, t.slug) for t in tenants[:200]]


class KeyFilter(ExactFilter):
    title = "key"
    parameter_name = "key"
    field = "api_key_id"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[int, str]]:
        keys = scope(ApiKey.objects.order_by("-created_at"), request.user, model_admin.read_perm)
        return [(k.pk, str(k)) for k in keys[:100]]


class CatalogFilter(ExactFilter):
    title = "model"
    parameter_name = "model"
    field = "model"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [(name, name) for name in Model.objects.order_by("name").values_list("name", flat=True)[:200]]


class ChannelFilter(ExactFilter):
    """Channels are the platform's business: tenant users get no such filter."""

    title = "channel"
    parameter_name = "channel"
    field = "channel_id"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[int, str]]:
        return [(c.pk, c.name) for c in Channel.objects.order_by("name")] if is_platform(request.user) else []


class ErrorFilter(ExactFilter):
    title = "error code"
    parameter_name = "error_code"
    field = "error_code"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [(code, code) for code in ERROR_CODES]


class SinceFilter(admin.SimpleListFilter):
    title = "created"
    parameter_name = "since"
    DAYS = {"1": "last 24 hours", "7": "last 7 days", "30": "last 30 days"}

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return list(self.DAYS.items())

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in self.DAYS:
            return queryset.filter(created_at__gte=timezone.now() - timedelta(days=int(self.value())))
        return queryset


def platform_only_removed(request: HttpRequest, names: tuple[str, ...]) -> tuple[str, ...]:
    """Channels are the platform's business (ChannelFilter): a tenant's users see which model served
    them, never which upstream account."""
    return names if is_platform(request.user) else tuple(name for name in names if name != "channel")


class AttemptTimeline(TabularInline):
    model = TaskAttempt
    fields = (
        "number",
        "channel",
        "started_at",
        "latency_ms",
        "first_token_ms",
        "http_status",
        "error_code",
        "error_message",
    )
    readonly_fields = fields
    ordering = ("number",)
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        return platform_only_removed(request, self.fields)


@admin.register(Task)
class TaskAdmin(BigTableAdmin):
    list_display = (
        "id",
        "tenant",
        "model",
        "dialect",
        "status_badge",
        "error_code",
        "channel",
        "credits_charged",
        "created_at",
    )
    list_filter = (TenantFilter, KeyFilter, CatalogFilter, "status", ErrorFilter, ChannelFilter, SinceFilter)
    list_select_related = ("tenant", "channel")
    search_fields = ("id__exact",)  # the primary key's index; "=id" would be a case-insensitive scan
    ordering = ("-created_at",)
    inlines = (AttemptTimeline,)
    actions = ("retry_as_new", "cancel")
    fields = (
        "id",
        "tenant",
        "api_key",
        "model",
        "dialect",
        "protocol",
        "end_user",
        "tags",
        "status",
        "progress",
        "stream",
        "sync",
        "created_at",
        "started_at",
        "finished_at",
        "request_view",
        "result_view",
        "error_code",
        "error_message",
        "credits_reserved",
        "credits_charged",
        "charge_basis",
        "price",
        "channel",
        "callback_view",
        "content_pruned_at",
    )
    readonly_fields = fields

    def get_list_display(self, request: HttpRequest) -> tuple[str, ...]:
        return platform_only_removed(request, self.list_display)

    def get_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        return platform_only_removed(request, self.fields)

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        return self.get_fields(request, obj)

    @display(
        description="status",
        label={
            "completed": "success",
            "failed": "danger",
            "cancelled": "danger",
            "processing": "info",
            "pending": "warning",
        },
    )
    def status_badge(self, obj: Task) -> str:
        return obj.status

    @display(description="request")
    def request_view(self, obj: Task) -> str:
        """The parameters, and each message with its media as truncated text (never loaded)."""
        if gone := _content_gone(obj):
            return gone
        params = {k: v for k, v in obj.request.items() if k != "messages" and v is not None}
        rows = [(m["role"], _message_html(m)) for m in obj.request.get("messages", [])]
        messages_html = format_html_join("", "<div class='mb-2'><strong>{}</strong>: {}</div>", rows)
        return format_html("<pre class='text-xs'>{}</pre>{}", json.dumps(params, indent=1), messages_html)

    @display(description="callback")
    def callback_view(self, obj: Task) -> str:
        """Where the task is POSTed when it ends, and each attempt's outcome."""
        if not obj.callback_url:
            return "—"
        delivery = CallbackDelivery.objects.filter(task=obj).first()
        if delivery is None:
            state = "not sent yet" if not obj.is_finished else "queued"
            return format_html("<code class='break-all'>{}</code>: {}", obj.callback_url, state)
        attempts = format_html_join(
            "",
            "<li>{}: {}</li>",
            ((a["at"], a.get("status_code") or a.get("error")) for a in delivery.attempts),
        )
        return format_html(
            "<code class='break-all'>{}</code>: <strong>{}</strong><ul class='text-xs'>{}</ul>",
            delivery.url,
            delivery.status,
            attempts,
        )

    @display(description="result")
    def result_view(self, obj: Task) -> str:
        if gone := _content_gone(obj):
            return gone
        if not obj.result:
            return "—"
        message = obj.result["choices"][0]["message"]
        return format_html(
            "<div class='whitespace-pre-wrap'>{}</div><pre class='text-xs mt-2'>{}</pre>",
            _message_html(message),
            json.dumps(obj.result.get("usage"), indent=1),
        )

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @action(description="Retry as a new task", permissions=["retry"])
    def retry_as_new(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Each retry is admitted as the API admits a request (task_submit): a revoked or expired key, a
        suspended tenant, an exhausted budget or balance refuse it with the API's own reason."""
        retried = 0
        queryset = self.acting_on(request, queryset, Perm.RETRY)  # only where the role may spend
        for task in queryset.filter(status=Task.Status.FAILED).select_related("api_key__tenant")[:100]:
            if _content_gone(task):
                self.message_user(
                    request, f"{task.id}: not retried, its request was erased", messages.WARNING
                )
                continue
            validated = _resubmittable(task)
            try:
                admitted = task_submit(api_key=task.api_key, validated=validated)
            except ApiError as error:  # report why each retry was refused, go on with the rest
                self.message_user(
                    request,
                    f"{task.id}: not retried, refused as the API would refuse it: {error.message} "
                    f"({error.status_code} {error.code})",
                    messages.WARNING,
                )
                continue
            retried += 1
            self.message_user(request, f"{task.id} resubmitted as {admitted.task.id}")
        if not retried:
            self.message_user(request, "No failed task among the selection was retried.", messages.WARNING)

    @action(description="Cancel", permissions=["retry"])
    def cancel(self, request: HttpRequest, queryset: QuerySet) -> None:
        """As POST /v1/tasks/{id}/cancel does: a pending task is cancelled at once, its hold released; a
        processing one's worker is asked to stop its call and settle it (the list shows it when done)."""
        queryset = self.acting_on(request, queryset, Perm.RETRY)
        counts = {True: 0, False: 0}
        who = f"admin user {request.user.get_username()}"
        for task in queryset.filter(status__in=Task.UNFINISHED)[: self.CANCEL_AT_ONCE]:
            try:
                counts[task_cancel(task, by=who)] += 1
            except TaskAlreadyFinished:
                continue  # it finished meanwhile: nothing to cancel
        if not any(counts.values()):
            self.message_user(request, "No unfinished task among the selection.", messages.WARNING)
            return
        self.message_user(
            request,
            f"{counts[True]} pending tasks cancelled, their holds released; "
            f"the workers of {counts[False]} processing tasks asked to stop them.",
        )

    CANCEL_AT_ONCE = 1000

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return can_any(request.user, Perm.RETRY)

    def get_urls(self):
        views = [
            path("usage/", self.admin_site.admin_view(self.usage_view), name="tasks_usage"),
            path("failures/", self.admin_site.admin_view(self.failures_view), name="tasks_failures"),
        ]
        return views + super().get_urls()

    def usage_view(self, request: HttpRequest) -> TemplateResponse:
        self._require(request, Perm.MONEY)
        data = usage_dashboard(request.user)
        return self.render_page(request, "admin/tasks/usage.html", "Usage and spend", **data)

    def failures_view(self, request: HttpRequest) -> TemplateResponse:
        self._require(request, Perm.READ)
        return self.render_page(
            request, "admin/tasks/failures.html", "Failures", **failures_dashboard(request.user)
        )

    def _require(self, request: HttpRequest, perm: Perm) -> None:
        if not can_any(request.user, perm):
            raise PermissionDenied


def _content_gone(task: Task) -> str:
    """Why the task's request and answer cannot be shown, if they cannot."""
    if task.content_pruned_at is not None:
        return f"erased at {task.content_pruned_at:%Y-%m-%d %H:%M} UTC (content retention)"
    if is_sealed(task.request):
        return "not stored: its tenant stores no content"
    return ""


def _resubmittable(task: Task) -> dict[str, Any]:
    """The validated form of a stored request, as task_submit takes it."""
    request = task.request
    return {
        "model": task.model,
        "protocol": "custom",
        "messages": request["messages"],
        "stream": task.stream,
        "sync": False,
        **{k: request.get(k) for k in ("max_tokens", "temperature", "reasoning")},
        "parameters": task.upstream_parameters | task.attribution,
    }


def _message_html(message: dict[str, Any]) -> str:
    """A message's content, the tool calls it makes and the call it answers."""
    shown = [_content_html(message["content"])] if message.get("content") else []
    if message.get("tool_call_id"):
        shown.insert(0, format_html("<em>[answers {}]</em>", message["tool_call_id"]))
    for call in message.get("tool_calls") or []:
        function = call["function"]
        shown.append(
            format_html(
                "<code class='text-xs'>[calls {}({}) as {}]</code>",
                function["name"],
                _truncate(function["arguments"], 500),
                call["id"],
            )
        )
    return format_html_join(" ", "{}", ((part,) for part in shown))


def _content_html(content: str | list[dict[str, Any]]) -> str:
    """A message's text, and its media as text only. The URLs are the caller's: an <img> or a link the
    browser follows by itself would make the operator's browser fetch them (a tracking pixel, or a
    request into the operator's own network), so they are shown as truncated, escaped text."""
    if isinstance(content, str):
        return format_html("{}", _truncate(content, 2000))
    parts = []
    for part in content:
        if part["type"] == "text":
            parts.append(format_html("{}", _truncate(part["text"], 2000)))
            continue
        url = part[part["type"]]["url"]
        where = f"inline data ({len(url)} chars)" if is_inline(url) else _truncate(url, 120)
        parts.append(format_html("<span class='text-xs break-all'>[{}: {}]</span>", part["type"], where))
    return format_html_join(" ", "{}", ((p,) for p in parts))


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"
