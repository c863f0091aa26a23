"""Admin pages of tenants, keys, members, money and the audit log."""

import csv
from datetime import timedelta
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html
from unfold.decorators import action, display
from unfold.paginator import InfinitePaginator

from foxgate import webhooks
from tenants.access import Perm, PlatformAdmin, TenantScopedAdmin, can, is_platform, tenants_with
from tenants.alerts import (
    alert_rule_check,
    alert_rule_save,
    webhook_endpoint_add,
    webhook_endpoint_update,
)
from tenants.billing import csv_value
from tenants.models import (
    Alert,
    AlertRule,
    ApiKey,
    AuditEvent,
    EndUserSpend,
    LedgerEntry,
    Membership,
    ModelRuleOverride,
    Spending,
    SsoIdentity,
    Tenant,
    WebhookDelivery,
    WebhookEndpoint,
)
from tenants.services import (
    KEY_FIELDS,
    OVERRIDE_FIELDS,
    TENANT_FIELDS,
    Actor,
    apikey_check,
    apikey_issue,
    apikey_revoke,
    apikey_rotate,
    apikey_update,
    callback_secret,
    credits_topup,
    membership_add,
    membership_remove,
    membership_update,
    override_add,
    override_update,
    tenant_create,
    tenant_update,
)

LIMITS = ("rpm", "tpm", "max_concurrency", "budget", "budget_period")


def admin_actor(request: HttpRequest) -> Actor:
    return Actor(f"admin:{request.user.get_username()}", source=request.META.get("REMOTE_ADDR", ""))


class ShownOnce:
    """A secret in a template context: it renders as itself, but its repr hides it. Django's template
    engine logs a failed variable lookup at DEBUG with the repr of the whole context, so a plain string
    would end up in the log."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def __str__(self) -> str:
        return self._secret

    def __repr__(self) -> str:
        return "<a key secret, not shown here>"


def show_rule_errors(
    form: forms.BaseForm, error: ValidationError, fields: dict[str, str] | None = None
) -> None:
    """A service's refusal, shown on the form field it names (the rule itself lives in the service)."""
    for field, messages_ in error.message_dict.items():
        name = (fields or {}).get(field, field)
        form.add_error(name if name in form.fields else None, messages_)


def form_values(form: forms.BaseForm, allowed: tuple[str, ...]) -> dict:
    """The edited values of the fields a service takes; the service writes only what differs."""
    return {field: form.cleaned_data[field] for field in allowed if field in form.cleaned_data}


class BigTableAdmin(TenantScopedAdmin):
    """Lists over tables of millions of rows: no COUNT(*), newest first."""

    paginator = InfinitePaginator
    show_full_result_count = False
    list_per_page = 50


class TopUpForm(forms.Form):
    amount = forms.DecimalField(min_value=Decimal("0.000001"), max_digits=20, decimal_places=6)
    memo = forms.CharField(max_length=500, required=False)


class TenantForm(forms.ModelForm):
    def clean(self) -> dict:
        data = super().clean()
        if self.instance.pk:
            try:
                self.instance.check_limits_cover_keys({f: data.get(f) for f in LIMITS if f in data})
            except ValidationError as error:
                show_rule_errors(self, error)
        return data


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    """Balances and budgets are money: owners, admins and billing read them; only platform staff change a
    tenant's own settings and top it up."""

    form = TenantForm
    tenant_field = "pk"
    read_perm = Perm.MONEY
    list_display = (
        "slug",
        "name",
        "status",
        "group",
        "balance",
        "held",
        "available_credits",
        "budget_text",
        "limits_text",
    )
    list_filter = ("status", "group")
    search_fields = ("slug", "name")
    fields = (
        "slug",
        "name",
        "status",
        "group",
        *LIMITS,
        "end_user_budget",
        "store_content",
        "balance",
        "held",
        "period_spend",
        "period_started_at",
    )
    readonly_fields = ("balance", "held", "period_spend", "period_started_at")
    actions_detail = ("top_up",)

    def get_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        # Its key managers see the secret their callback receivers check (tasks/callbacks.py).
        if obj is not None and can(request.user, Perm.MANAGE_KEYS, obj.pk):
            return (*self.fields, "callback_signing_secret")
        return self.fields

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        shown = ("callback_signing_secret",) if obj is not None else ()
        return (*(self.readonly_fields if is_platform(request.user) else self.fields), *shown)

    @display(description="callback signing secret")
    def callback_signing_secret(self, obj: Tenant) -> str:
        return callback_secret(obj)

    @display(description="available")
    def available_credits(self, obj: Tenant) -> Decimal:
        return obj.available

    @display(description="budget")
    def budget_text(self, obj: Tenant) -> str:
        return "—" if obj.budget is None else f"{obj.period_spend} / {obj.budget} per {obj.budget_period}"

    @display(description="limits")
    def limits_text(self, obj: Spending) -> str:
        return limits_text(obj)

    def save_model(self, request: HttpRequest, obj: Tenant, form, change: bool) -> None:
        # Never a full-row save: the form's copy of balance and held is stale the moment a task settles.
        values = form_values(form, TENANT_FIELDS)
        if change:
            tenant_update(tenant=obj, actor=admin_actor(request), **values)
            return
        slug, name = values.pop("slug"), values.pop("name")
        obj.pk = tenant_create(slug=slug, name=name, actor=admin_actor(request), **values).pk

    @action(description="Top up", url_path="top-up", permissions=["top_up"])
    def top_up(self, request: HttpRequest, object_id: str) -> HttpResponse:
        tenant = get_object_or_404(self.may(request, Perm.TOP_UP), pk=object_id)
        form = TopUpForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            credits_topup(
                tenant=tenant,
                amount=form.cleaned_data["amount"],
                memo=form.cleaned_data["memo"],
                actor=admin_actor(request),
            )
            self.message_user(request, f"Added {form.cleaned_data['amount']} credits to {tenant.slug}.")
            return HttpResponseRedirect(reverse("admin:tenants_tenant_change", args=[tenant.pk]))
        return self.render_page(
            request, "admin/tenants/top_up.html", f"Top up {tenant.slug}", form=form, tenant=tenant
        )

    def has_top_up_permission(self, request: HttpRequest, object_id: str | None = None) -> bool:
        return self._may_act(request, Perm.TOP_UP, object_id)


def limits_text(obj: Spending) -> str:
    parts = [
        f"{obj.rpm} rpm" if obj.rpm else "",
        f"{obj.tpm} tpm" if obj.tpm else "",
        f"{obj.max_concurrency} at once" if obj.max_concurrency else "",
    ]
    return ", ".join(p for p in parts if p) or "—"


class ApiKeyForm(forms.ModelForm):
    """Issue or adjust a key; a key's limits and budget stay within its tenant's own."""

    allowed_models_text = forms.CharField(
        label="Allowed models",
        required=False,
        help_text="Comma-separated names or families (gpt-4o*). Empty: all.",
    )
    allowed_ips_text = forms.CharField(
        label="Allowed IPs", required=False, help_text="Comma-separated addresses or CIDR ranges. Empty: any."
    )

    class Meta:
        model = ApiKey
        fields = ("tenant", "name", *LIMITS, "expires_at")

    def __init__(self, *args, user=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "tenant" not in self.fields:
            return  # a read-only view: the admin built the form without its editable fields
        self.fields["tenant"].queryset = tenants_with(user, Perm.MANAGE_KEYS)
        if self.instance.pk:
            self.fields["tenant"].disabled = True
            self.fields["allowed_models_text"].initial = ", ".join(self.instance.allowed_models)
            self.fields["allowed_ips_text"].initial = ", ".join(self.instance.allowed_ips)

    def clean_allowed_ips_text(self) -> list[str]:
        return _split(self.cleaned_data["allowed_ips_text"])

    def clean_allowed_models_text(self) -> list[str]:
        return _split(self.cleaned_data["allowed_models_text"])

    def clean(self) -> dict:
        """The key rules of tenants.services.apikey_check, shown on the fields they name."""
        data = super().clean()
        tenant = self.instance.tenant if self.instance.pk else data.get("tenant")
        if tenant is None:
            return data
        values = {field: data.get(field) for field in LIMITS}
        values |= {
            "allowed_ips": data.get("allowed_ips_text", []),
            "allowed_models": data.get("allowed_models_text", []),
        }
        try:
            cleaned = apikey_check(tenant=tenant, values=values)
        except ValidationError as error:
            show_rule_errors(
                self, error, {"allowed_ips": "allowed_ips_text", "allowed_models": "allowed_models_text"}
            )
            return data
        data["allowed_ips_text"], data["allowed_models_text"] = (
            cleaned["allowed_ips"],
            cleaned["allowed_models"],
        )
        return data


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin):
    """Keys are read by every role and managed by owners and admins of the key's tenant. A new secret
    (issued by the add form, or by rotation) is shown in the response of the POST that made it and kept
    nowhere: not in the session, a message or a log."""

    write_perm = Perm.MANAGE_KEYS
    form = ApiKeyForm
    list_display = ("key_text", "name", "tenant", "state", "limits_text", "last_used_at", "created_at")
    list_filter = ("revoked_at",)
    search_fields = ("key_id", "name", "tenant__slug")
    list_select_related = ("tenant",)
    actions = ("revoke_keys",)
    actions_detail = ("rotate",)

    def get_form(self, request: HttpRequest, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)

        class UserForm(form):
            def __init__(self, *args, **inner) -> None:
                super().__init__(*args, user=request.user, **inner)

        return UserForm

    def get_fieldsets(self, request: HttpRequest, obj=None):
        return [
            (
                None,
                {
                    "fields": (
                        "tenant",
                        "name",
                        "allowed_models_text",
                        "allowed_ips_text",
                        *LIMITS,
                        "expires_at",
                    )
                },
            )
        ]

    @display(description="key")
    def key_text(self, obj: ApiKey) -> str:
        return str(obj)

    @display(description="state", label={"active": "success", "revoked": "danger", "expired": "warning"})
    def state(self, obj: ApiKey) -> str:
        from django.utils import timezone

        if obj.revoked_at:
            return "revoked"
        return "expired" if obj.is_expired(timezone.now()) else "active"

    @display(description="limits")
    def limits_text(self, obj: ApiKey) -> str:
        return limits_text(obj)

    def save_model(self, request: HttpRequest, obj: ApiKey, form, change: bool) -> None:
        data = form.cleaned_data
        limits = {field: data[field] for field in LIMITS}
        if change:
            apikey_update(
                api_key=obj,
                actor=admin_actor(request),
                allowed_models=data["allowed_models_text"],
                allowed_ips=data["allowed_ips_text"],
                **form_values(form, KEY_FIELDS),
            )
            return
        issued = apikey_issue(
            tenant=data["tenant"],
            name=data["name"],
            allowed_models=data["allowed_models_text"],
            allowed_ips=data["allowed_ips_text"],
            expires_at=data["expires_at"],
            actor=admin_actor(request),
            **limits,
        )
        obj.pk = issued.api_key.pk
        obj.new_secret = issued.secret  # for response_add, on this object only; never saved

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue=None) -> HttpResponse:
        return self.secret_page(request, obj, obj.new_secret)

    def secret_page(self, request: HttpRequest, api_key: ApiKey, secret: str) -> HttpResponse:
        """The new secret, as the answer to the POST that made it: a reload cannot show it again, and no
        cache may keep the page."""
        response = self.render_page(
            request,
            "admin/tenants/key_secret.html",
            f"Key {api_key}",
            api_key=api_key,
            secret=ShownOnce(secret),
        )
        add_never_cache_headers(response)  # Cache-Control: no-store (with no-cache, must-revalidate)
        return response

    @action(description="Revoke selected keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet) -> None:
        queryset = self.acting_on(request, queryset, Perm.MANAGE_KEYS)
        for api_key in queryset.filter(revoked_at__isnull=True):
            apikey_revoke(api_key=api_key, actor=admin_actor(request))
        self.message_user(request, "Revoked. Every server refuses the keys within seconds.", messages.SUCCESS)

    @action(description="Rotate (old secret works 1 more hour)", url_path="rotate", permissions=["rotate"])
    def rotate(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET asks to confirm; the POST (with its CSRF token) rotates and answers with the new secret."""
        api_key = get_object_or_404(
            self.may(request, Perm.MANAGE_KEYS), pk=object_id, revoked_at__isnull=True
        )
        if request.method != "POST":
            return self.render_page(
                request, "admin/tenants/key_rotate.html", f"Rotate {api_key}", api_key=api_key
            )
        issued = apikey_rotate(api_key=api_key, grace=timedelta(hours=1), actor=admin_actor(request))
        return self.secret_page(request, api_key, issued.secret)

    def has_rotate_permission(self, request: HttpRequest, object_id: str | None = None) -> bool:
        return self._may_act(request, Perm.MANAGE_KEYS, object_id)


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__username", "tenant__slug")
    list_select_related = ("user", "tenant")

    def save_model(self, request: HttpRequest, obj: Membership, form, change: bool) -> None:
        values = form_values(form, ("user", "tenant", "role"))
        if change:
            membership_update(membership=obj, actor=admin_actor(request), **values)
            return
        obj.pk = membership_add(actor=admin_actor(request), **values).pk

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        membership_remove(membership=obj, actor=admin_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for membership in queryset.select_related("user", "tenant"):
            membership_remove(membership=membership, actor=admin_actor(request))


@admin.register(ModelRuleOverride)
class ModelRuleOverrideAdmin(TenantScopedAdmin):
    list_display = ("tenant", "model_pattern", "disabled", "max_images", "max_output_tokens", "reasoning")
    list_filter = ("disabled", "reasoning")
    search_fields = ("tenant__slug", "model_pattern")

    def save_model(self, request: HttpRequest, obj: ModelRuleOverride, form, change: bool) -> None:
        values = form_values(form, ("tenant", *OVERRIDE_FIELDS))
        tenant = values.pop("tenant", obj.tenant)
        if change:
            override_update(override=obj, actor=admin_actor(request), **values)
            return
        obj.pk = override_add(tenant=tenant, actor=admin_actor(request), **values).pk


@admin.register(LedgerEntry)
class LedgerEntryAdmin(BigTableAdmin):
    read_perm = Perm.MONEY  # and so the CSV export, which is the changelist's own queryset
    list_display = (
        "created_at",
        "tenant",
        "kind",
        "amount",
        "held_change",
        "task_link",
        "key_text",
        "price",
        "memo",
    )
    list_filter = ("kind",)
    list_select_related = ("tenant", "api_key", "price", "price__model")
    search_fields = ("task__id__exact",)  # an exact match the task_id index serves (ids are lowercase)
    ordering = ("-created_at",)
    actions_list = ("export_csv",)

    @display(description="task")
    def task_link(self, obj: LedgerEntry) -> str:
        if obj.task_id is None:
            return "—"
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:tasks_task_change", args=[obj.task_id]), obj.task_id
        )

    @display(description="key")
    def key_text(self, obj: LedgerEntry) -> str:
        return str(obj.api_key) if obj.api_key_id else "—"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # lines are written by top-ups and tasks, never by hand

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @action(description="Export CSV", url_path="export-csv", permissions=["view"])
    def export_csv(self, request: HttpRequest) -> StreamingHttpResponse:
        """Every line the user may see, streamed, however many there are."""
        changelist = self.get_changelist_instance(request)
        rows = changelist.get_queryset(request).values_list(
            "created_at",
            "tenant__slug",
            "kind",
            "amount",
            "held_change",
            "task_id",
            "api_key__key_id",
            "price__version",
            "memo",
            "task__end_user",
            "task__tags",
        )
        header = [
            "created_at",
            "tenant",
            "kind",
            "amount",
            "held_change",
            "task",
            "key",
            "price_version",
            "memo",
            "end_user",
            "tags",
        ]

        class Echo:
            def write(self, value: str) -> str:
                return value

        writer = csv.writer(Echo())
        lines = _with_header(header, rows.iterator(chunk_size=5000))
        body = (writer.writerow([csv_value(value) for value in line]) for line in lines)
        response = StreamingHttpResponse(body, content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="ledger.csv"'
        return response


def _with_header(header, rows):
    yield header
    yield from rows


@admin.register(EndUserSpend)
class EndUserSpendAdmin(BigTableAdmin):
    """Each end user's spend this period against its tenant's end-user budget; written by tasks only."""

    read_perm = Perm.MONEY
    list_display = ("end_user", "tenant", "period_spend", "held", "budget_text", "period_started_at")
    list_select_related = ("tenant",)
    search_fields = ("end_user",)
    ordering = ("tenant", "end_user")  # the unique index
    readonly_fields = ("tenant", "end_user", "period_spend", "held", "period_started_at")

    @display(description="budget")
    def budget_text(self, obj: EndUserSpend) -> str:
        budget = obj.tenant.end_user_budget
        return "—" if budget is None else f"{budget} per {obj.tenant.budget_period}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(SsoIdentity)
class SsoIdentityAdmin(PlatformAdmin):
    """Who signed in through the identity provider, with the groups they came with and the roles those
    gave them (tenants/sso.py); written by sign-in only."""

    list_display = ("user", "subject", "groups", "roles", "last_sign_in")
    list_select_related = ("user",)
    search_fields = ("user__username", "subject")
    ordering = ("-last_sign_in",)
    readonly_fields = ("user", "issuer", "subject", "groups", "roles", "last_sign_in")
    fields = readonly_fields

    @display(description="roles")
    def roles(self, obj: SsoIdentity) -> str:
        roles = ["platform staff"] if obj.user.is_superuser else []
        roles += [f"{m.tenant.slug}: {m.role}" for m in obj.user.memberships.select_related("tenant")]
        return ", ".join(roles) or "none"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class WebhookEndpointForm(forms.ModelForm):
    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        if self.instance.pk is None:
            webhooks.url_check(url, resolve=True)  # raises the field's ValidationError
        return url


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(TenantScopedAdmin):
    """A tenant's alert webhooks; its managers see the signing secret, which their receiver checks."""

    form = WebhookEndpointForm
    read_perm = Perm.MONEY
    write_perm = Perm.MANAGE_KEYS
    list_display = ("url", "tenant", "enabled", "created_at")
    list_select_related = ("tenant",)

    def get_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        if obj is None:
            return ("tenant", "url")
        managed = ("signing_secret",) if self.has_change_permission(request, obj) else ()
        return ("tenant", "url", "enabled", *managed)

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> tuple[str, ...]:
        return ("tenant", "url", "signing_secret") if obj else ()

    @display(description="signing secret")
    def signing_secret(self, obj: WebhookEndpoint) -> str:
        return obj.secret  # listed only for those who manage the endpoint (get_fields)

    def get_form(self, request: HttpRequest, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if "tenant" in form.base_fields:
            form.base_fields["tenant"].queryset = tenants_with(request.user, Perm.MANAGE_KEYS)
        return form

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form, change: bool) -> None:
        if change:
            webhook_endpoint_update(endpoint=obj, enabled=obj.enabled, actor=admin_actor(request))
            return
        obj.pk = webhook_endpoint_add(tenant=obj.tenant, url=obj.url, actor=admin_actor(request)).pk


class AlertRuleForm(forms.ModelForm):
    def _post_clean(self) -> None:
        super()._post_clean()  # the instance, from the form's values
        try:
            alert_rule_check(self.instance)
        except ValidationError as error:
            show_rule_errors(self, error)


@admin.register(AlertRule)
class AlertRuleAdmin(TenantScopedAdmin):
    read_perm = Perm.MONEY
    write_perm = Perm.MANAGE_KEYS
    form = AlertRuleForm
    list_display = ("__str__", "tenant", "api_key", "webhook", "email", "enabled")
    list_select_related = ("tenant", "api_key", "webhook")
    fields = ("tenant", "api_key", "kind", "threshold", "webhook", "email", "enabled")

    def get_form(self, request: HttpRequest, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.base_fields["tenant"].queryset = tenants_with(request.user, Perm.MANAGE_KEYS)
        return form

    def save_model(self, request: HttpRequest, obj: AlertRule, form, change: bool) -> None:
        alert_rule_save(rule=obj, actor=admin_actor(request))


class DeliveryLog(admin.TabularInline):
    model = WebhookDelivery
    fields = ("endpoint", "status", "attempts", "delivered_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(BigTableAdmin):
    """Every threshold crossed, with its deliveries; written by charges only."""

    read_perm = Perm.MONEY
    tenant_field = "rule__tenant"
    list_display = ("fired_at", "rule__tenant", "rule", "emailed_at")
    list_select_related = ("rule__tenant",)
    ordering = ("-fired_at",)
    inlines = (DeliveryLog,)
    readonly_fields = ("rule", "crossing", "details", "fired_at", "emailed_at")
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(BigTableAdmin):
    """The delivery log: each alert POSTed, every attempt's status code or error."""

    read_perm = Perm.MONEY
    tenant_field = "endpoint__tenant"
    list_display = ("created_at", "endpoint__tenant", "endpoint", "status", "attempt_count", "delivered_at")
    list_filter = ("status",)
    list_select_related = ("endpoint__tenant",)
    ordering = ("-created_at",)
    readonly_fields = ("alert", "endpoint", "status", "attempts", "created_at", "delivered_at")
    fields = readonly_fields

    @display(description="attempts")
    def attempt_count(self, obj: WebhookDelivery) -> int:
        return len(obj.attempts)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(BigTableAdmin):
    read_perm = Perm.AUDIT  # the sidebar's sees_audit_log reads the same row of tenants.access.GRANTS
    list_display = ("created_at", "actor", "action", "tenant", "target", "source")
    list_filter = ("action",)
    search_fields = ("actor", "target")
    ordering = ("-created_at",)
    readonly_fields = ("created_at", "actor", "action", "tenant", "target", "details", "source")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
