import fnmatch
import hashlib
import hmac
import ipaddress
import re
import secrets
import string
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from foxgate.crypto import encrypted
from foxgate.errors import ApiError, AuthenticationError, PermissionDenied

KEY_PREFIX = "sk-"
KEY_ID_LENGTH = 12
_KEY_ID_ALPHABET = string.ascii_lowercase + string.digits
CREDITS = {"max_digits": 20, "decimal_places": 6}
LIMIT_FIELDS = ("rpm", "tpm", "max_concurrency", "budget", "budget_period")
# The limits a key may tighten but never loosen (budget_period is a choice, not a ceiling).
CEILINGS = ("rpm", "tpm", "max_concurrency", "budget")
# Model names are ASCII words with . _ - : / @ +; patterns add * and ?. No spaces, commas or brackets:
# the admin and the CLI split lists on commas, and fnmatch's [..] classes would be a surprise in a name.
_MODEL_PATTERN = re.compile(r"^[A-Za-z0-9._:/@+*?-]{1,200}$")


class TenantQuerySet(models.QuerySet):
    def for_tenant(self, tenant: "Tenant") -> "TenantQuerySet":
        return self.filter(tenant=tenant)


class Spending(models.Model):
    """Limits, a budget and the counters they are checked against; tenants and keys each have them.

    `held` is what running tasks have set aside and `period_spend` what was charged since
    `period_started_at`; both move only by conditional F() updates, so no increment is ever lost and
    no concurrent request can pass a budget another one already used up."""

    class Period(models.TextChoices):
        DAY = "day"
        MONTH = "month"

    rpm = models.PositiveIntegerField("requests per minute", null=True, blank=True)
    tpm = models.PositiveIntegerField("tokens per minute", null=True, blank=True)
    max_concurrency = models.PositiveIntegerField("concurrent tasks", null=True, blank=True)
    budget = models.DecimalField(null=True, blank=True, help_text="Credits per budget period.", **CREDITS)
    budget_period = models.CharField(max_length=8, choices=Period.choices, default=Period.MONTH)
    held = models.DecimalField(default=Decimal(0), **CREDITS)
    period_spend = models.DecimalField(default=Decimal(0), **CREDITS)
    period_started_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True


class Tenant(Spending):
    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    group = models.CharField(max_length=64, default="default", help_text="Selects prices and model sets.")
    # Credits the tenant owns: the sum of its ledger's amounts. Its `held` is the sum of the ledger's held
    # changes, so what it may still spend is balance - held.
    balance = models.DecimalField(default=Decimal(0), **CREDITS)
    end_user_budget = models.DecimalField(
        null=True,
        blank=True,
        help_text="Credits each end user (a request's `user`) may spend per budget period; blank: no limit.",
        **CREDITS,
    )
    store_content = models.BooleanField(
        default=True,
        help_text="Off: its tasks keep only metadata and usage. The request is held encrypted while the "
        "task runs and erased when it ends; the answer reaches the caller and is never stored.",
    )
    # Signs the tenant's task callbacks (tasks/callbacks.py); made on first use. Encrypted at rest
    # (foxgate/crypto.py): read it through `callback_secret`.
    callback_secret_encrypted = models.TextField(blank=True, editable=False)
    callback_secret = encrypted("callback_secret_encrypted")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(held__gte=0), name="tenant_held_not_negative")
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def available(self) -> Decimal:
        return self.balance - self.held

    def check_key_limits(self, limits: Mapping[str, Any]) -> None:
        """A key's limits stay within this tenant's: a key may be tighter, never looser.

        An unset key limit is within any tenant limit (admission checks the tenant's scope too), so a
        tenant may be capped without touching its keys. Raises ValidationError naming each field."""
        errors = {}
        for field in CEILINGS:
            own, ceiling = limits.get(field), getattr(self, field)
            if own is not None and ceiling is not None and own > ceiling:
                errors[field] = f"The tenant's own limit is {ceiling}; a key's may not be higher than that."
        if errors:
            raise ValidationError(errors)

    def check_limits_cover_keys(self, limits: Mapping[str, Any]) -> None:
        """Lowering a tenant's limit below what one of its live keys allows is refused, naming the keys.

        Refused rather than silently lowering the keys: a key's limit is someone's deliberate setting, and
        the operator should see which keys it concerns (or suspend the tenant when it is urgent)."""
        keys = ApiKey.objects.filter(tenant=self, revoked_at__isnull=True).order_by("key_id")
        errors = {}
        for field in CEILINGS:
            ceiling = limits.get(field)
            if ceiling is None:
                continue
            above = list(keys.filter(**{f"{field}__gt": ceiling}).values_list("key_id", field)[:6])
            if above:
                named = ", ".join(f"{key_id} ({value})" for key_id, value in above[:5])
                more = " and more" if len(above) > 5 else ""
                errors[field] = (
                    f"Keys of this tenant allow more than {ceiling}: {named}{more}. "
                    "Lower or revoke them first."
                )
        if errors:
            raise ValidationError(errors)


class Membership(models.Model):
    """A Django user's role in a tenant, for the admin site."""

    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        BILLING = "billing"
        MEMBER = "member"
        VIEWER = "viewer"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_once_per_tenant")]

    def __str__(self) -> str:
        return f"{self.user} · {self.tenant} ({self.role})"


class SsoIdentity(models.Model):
    """The identity provider's account a Django user signs in as (tenants/sso.py): its issuer and the
    subject the provider names it by, which never changes, unlike an email or a user name."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identity"
    )
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    groups = models.JSONField(
        default=list, help_text="The groups of the last sign-in, as the provider sent them."
    )
    last_sign_in = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="sso_identity_unique")]
        verbose_name = "SSO identity"
        verbose_name_plural = "SSO identities"

    def __str__(self) -> str:
        return f"{self.user} ({self.subject} at {self.issuer})"


class ApiKey(Spending):
    """A tenant's API key. The secret itself is never stored: only an HMAC of it, keyed by a pepper.

    A rotated key keeps answering to its previous secret until `previous_expires_at`."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    key_id = models.CharField(max_length=KEY_ID_LENGTH, unique=True, help_text="Public part of the key.")
    digest = models.CharField(max_length=64)
    pepper_id = models.CharField(max_length=32)
    previous_digest = models.CharField(max_length=64, blank=True)
    previous_pepper_id = models.CharField(max_length=32, blank=True)
    previous_expires_at = models.DateTimeField(null=True, blank=True)
    name = models.CharField(max_length=200, blank=True)
    allowed_models = models.JSONField(
        default=list, blank=True, help_text="Model names or families (gpt-4o*); empty allows every model."
    )
    allowed_ips = models.JSONField(
        default=list, blank=True, help_text="Addresses or CIDR ranges; empty allows every address."
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(held__gte=0), name="apikey_held_not_negative")
        ]

    def __str__(self) -> str:
        return f"{KEY_PREFIX}{self.key_id}…"

    # DRF's IsAuthenticated asks the authenticated principal this; a key that authenticated is one.
    is_authenticated = True

    @staticmethod
    def new_key_id() -> str:
        return "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))

    @staticmethod
    def new_secret() -> str:
        return secrets.token_urlsafe(32)

    @staticmethod
    def split(token: str) -> tuple[str, str] | None:
        """`sk-<key id><secret>` → (key id, secret), or None when it cannot be one of ours."""
        if not token.startswith(KEY_PREFIX):
            return None
        body = token[len(KEY_PREFIX) :]
        key_id, secret = body[:KEY_ID_LENGTH], body[KEY_ID_LENGTH:]
        if len(key_id) < KEY_ID_LENGTH or not secret:
            return None
        return key_id, secret

    @staticmethod
    def digest_secret(secret: str, pepper_id: str) -> str:
        pepper = settings.API_KEY_PEPPERS[pepper_id]
        return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()

    def set_secret(self, secret: str, *, grace_until: datetime | None = None) -> None:
        """Store the new secret's digest; the old secret keeps working until `grace_until`, if given."""
        if grace_until is not None:
            self.previous_digest, self.previous_pepper_id = self.digest, self.pepper_id
            self.previous_expires_at = grace_until
        self.pepper_id = settings.API_KEY_PEPPER_ID
        self.digest = self.digest_secret(secret, self.pepper_id)

    def secret_matches(self, secret: str, now: datetime) -> bool:
        current = _digest_matches(self.digest, self.pepper_id, secret)
        previous = (
            bool(self.previous_digest)
            and self.previous_expires_at is not None
            and self.previous_expires_at > now
            and _digest_matches(self.previous_digest, self.previous_pepper_id, secret)
        )
        return current or previous

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def refusal(self, now: datetime) -> ApiError | None:
        """Why this key may not admit work now (revoked, expired, tenant suspended), as the API answers it;
        None when it may. Every admission path asks this: the API's authentication and the admin's retry."""
        if self.revoked_at is not None:
            return AuthenticationError("Invalid API key.")
        if self.is_expired(now):
            return AuthenticationError("This API key has expired.", code="expired_api_key")
        if self.tenant.status != Tenant.Status.ACTIVE:
            return PermissionDenied("This API key's tenant is suspended.", code="tenant_suspended")
        return None

    @staticmethod
    def clean_allowed_ips(values: Iterable[str]) -> list[str]:
        """The IP allow-list as stored: addresses or CIDR ranges, stripped and each checked."""
        cleaned: list[str] = []
        for value in (v.strip() for v in values):
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValidationError(
                    {"allowed_ips": f"{value!r} is not an IP address or CIDR range."}
                ) from None
            if value not in cleaned:
                cleaned.append(value)
        return cleaned

    @staticmethod
    def clean_allowed_models(values: Iterable[str]) -> list[str]:
        """The model allow-list as stored: names or families (gpt-4o*), stripped and checked."""
        cleaned: list[str] = []
        for value in (v.strip() for v in values):
            if not _MODEL_PATTERN.match(value) or not value.strip("*?"):
                raise ValidationError(
                    {
                        "allowed_models": f"{value!r} is not a model name or family: use letters, "
                        "digits, . _ - : / @ + and the wildcards * and ?, at most 200 characters "
                        "(an empty list allows every model)."
                    }
                )
            if value not in cleaned:
                cleaned.append(value)
        return cleaned

    def allows_model(self, model_name: str) -> bool:
        name = model_name.lower()
        return not self.allowed_models or any(
            fnmatch.fnmatchcase(name, p.lower()) for p in self.allowed_models
        )

    def allows_ip(self, address: str) -> bool:
        if not self.allowed_ips:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(network, strict=False) for network in self.allowed_ips)


def _digest_matches(digest: str, pepper_id: str, secret: str) -> bool:
    if pepper_id not in settings.API_KEY_PEPPERS:
        return False  # its pepper was retired: the key can no longer be verified
    return hmac.compare_digest(digest, ApiKey.digest_secret(secret, pepper_id))


class EndUserSpend(models.Model):
    """What one end user of a tenant (the `user` its requests name) has set aside and spent this budget
    period (the tenant's), checked against the tenant's end-user budget by the same conditional updates
    as the tenant's and the key's own (tenants/services.py credits_hold)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="end_users")
    end_user = models.CharField(max_length=256)
    held = models.DecimalField(default=Decimal(0), **CREDITS)
    period_spend = models.DecimalField(default=Decimal(0), **CREDITS)
    period_started_at = models.DateTimeField(default=timezone.now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "end_user"], name="end_user_spend_unique"),
            models.CheckConstraint(condition=models.Q(held__gte=0), name="end_user_held_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.end_user} of {self.tenant_id}"


class LedgerEntry(models.Model):
    """One append-only movement of a tenant's credits.

    `amount` changes the balance and `held_change` the credits set aside, so for every tenant
    balance = Σ amount and held = Σ held_change. A hold sets credits aside at submit; a capture
    spends part of it; a release returns the rest.
    """

    class Kind(models.TextChoices):
        TOPUP = "topup"
        HOLD = "hold"
        CAPTURE = "capture"
        RELEASE = "release"
        ADJUSTMENT = "adjustment"

    # The (tenant, created_at) index and ledger_once_per_task_kind serve these keys' lookups.
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="ledger", db_index=False)
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    task = models.ForeignKey(
        "tasks.Task", on_delete=models.PROTECT, null=True, blank=True, related_name="ledger", db_index=False
    )
    price = models.ForeignKey(
        "tasks.Price", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = models.DecimalField(default=Decimal(0), **CREDITS)
    held_change = models.DecimalField(default=Decimal(0), **CREDITS)
    memo = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(
                fields=["task", "kind"],
                condition=models.Q(task__isnull=False),
                name="ledger_once_per_task_kind",
            )
        ]
        indexes = [
            models.Index(fields=["tenant", "created_at"]),
            models.Index(fields=["tenant", "kind", "-created_at"], name="ledger_by_tenant_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} ({self.tenant_id})"


class ModelRuleOverride(models.Model):
    """A tenant's own, stricter rules for a model (or a family, with * and ? wildcards).

    Overrides only tighten the model's intrinsic rules (tasks/model_rules.py): a cap above the
    model's own changes nothing, and a reasoning setting the model cannot honour is refused here.
    """

    class Reasoning(models.TextChoices):
        INHERIT = "", "as the model does"
        FORCE = "required", "always on"
        FORBID = "refused", "always off"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="model_rule_overrides")
    model_pattern = models.CharField(max_length=200, help_text="A model name, or a family such as gpt-4o*.")
    disabled = models.BooleanField(default=False, help_text="The tenant may not use matching models at all.")
    max_images = models.PositiveSmallIntegerField(null=True, blank=True)
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning = models.CharField(
        max_length=16, choices=Reasoning.choices, blank=True, default=Reasoning.INHERIT
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "model_pattern"], name="override_once_per_tenant_pattern"
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant} · {self.model_pattern}"

    def matches(self, model_name: str) -> bool:
        return fnmatch.fnmatchcase(model_name.lower(), self.model_pattern.lower())

    def clean(self) -> None:
        from tasks.model_rules import rules_for

        intrinsic = rules_for(self.model_pattern).reasoning
        if self.reasoning and intrinsic != "optional" and intrinsic != self.reasoning:
            message = (
                f"{self.model_pattern} has reasoning {intrinsic} by nature; an override cannot change it"
            )
            raise ValidationError({"reasoning": message})


class AuditEvent(models.Model):
    """Who changed what, when and from where: keys, limits, budgets, prices and balances."""

    actor = models.CharField(max_length=200, help_text="A user name, or cli / system.")
    action = models.CharField(max_length=64, db_index=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    target = models.CharField(max_length=200, blank=True, help_text="What was changed, e.g. key abc123.")
    details = models.JSONField(default=dict, blank=True)
    source = models.CharField(
        max_length=200, blank=True, help_text="IP address or host the change came from."
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = TenantQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.target}"


class RateEvent(models.Model):
    """One admitted request, counted against the requests- and tokens-per-minute limits of its scopes.

    Kept in PostgreSQL, so every web process counts the same window; rows older than the window are
    pruned by a scheduled job."""

    scope = models.CharField(max_length=40)  # "key:<id>" or "tenant:<id>"
    at = models.DateTimeField()
    tokens = models.PositiveIntegerField()
    task = models.ForeignKey("tasks.Task", on_delete=models.CASCADE, null=True, related_name="+")

    class Meta:
        indexes = [models.Index(fields=["scope", "at"])]

    def __str__(self) -> str:
        return f"{self.scope} {self.at:%H:%M:%S} {self.tokens} tokens"


class WebhookEndpoint(models.Model):
    """Where a tenant's alerts are POSTed, signed with the endpoint's own secret (tenants/alerts.py)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=2048, help_text="HTTPS only; private addresses are refused.")
    # Encrypted at rest (foxgate/crypto.py); read and write it through `secret`.
    secret_encrypted = models.TextField(editable=False)
    secret = encrypted("secret_encrypted")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = TenantQuerySet.as_manager()

    def __str__(self) -> str:
        return self.url


class AlertRule(models.Model):
    """A threshold to hear about before the 402: a share of the tenant's (or one key's) budget spent this
    period, or the tenant's balance below an amount. It fires once per crossing, to its webhook and its
    email address."""

    class Kind(models.TextChoices):
        BUDGET = "budget", "percent of the budget spent"
        BALANCE = "balance", "balance below"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="alert_rules")
    api_key = models.ForeignKey(
        "ApiKey",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        help_text="The key's budget, not the tenant's.",
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    threshold = models.DecimalField(
        help_text="Percent of the budget (budget alerts) or credits (balance alerts).", **CREDITS
    )
    webhook = models.ForeignKey(WebhookEndpoint, null=True, blank=True, on_delete=models.SET_NULL)
    email = models.EmailField(blank=True)
    enabled = models.BooleanField(default=True)

    objects = TenantQuerySet.as_manager()

    def __str__(self) -> str:
        unit = "%" if self.kind == self.Kind.BUDGET else " credits"
        return f"{self.get_kind_display()} {self.threshold}{unit}"


class Alert(models.Model):
    """A rule's threshold crossed: once per `crossing` (the budget period's start, or for a balance the
    last top-up before it fell), whatever number of charges or processes crossed it together."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    crossing = models.CharField(max_length=64)
    details = models.JSONField(default=dict)
    fired_at = models.DateTimeField(default=timezone.now)
    emailed_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "crossing"], name="alert_once_per_crossing")]

    def __str__(self) -> str:
        return f"{self.rule} at {self.fired_at:%Y-%m-%d %H:%M}"


class DeliveryLog(models.Model):
    """A signed POST (foxgate/webhooks.py) and every attempt's outcome, for the admin's delivery logs."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.JSONField(default=list, help_text="Each attempt: when, the status code or the error.")
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class WebhookDelivery(DeliveryLog):
    """An alert POSTed to a webhook."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")

    objects = TenantQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [models.UniqueConstraint(fields=["alert", "endpoint"], name="delivery_once_per_alert")]

    def __str__(self) -> str:
        return f"{self.alert} to {self.endpoint}: {self.status}"
