import fnmatch
import hashlib
import hmac
import secrets
import string
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

KEY_PREFIX = "sk-"
KEY_ID_LENGTH = 12
_KEY_ID_ALPHABET = string.ascii_lowercase + string.digits
CREDITS = {"max_digits": 20, "decimal_places": 6}


class TenantQuerySet(models.QuerySet):
    def for_tenant(self, tenant: "Tenant") -> "TenantQuerySet":
        return self.filter(tenant=tenant)


class Tenant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    group = models.CharField(max_length=64, default="default", help_text="Selects prices and model sets.")
    # Credits the tenant owns (the sum of its ledger's amounts) and credits set aside for running tasks
    # (the sum of its ledger's held changes). Spendable is balance - held.
    balance = models.DecimalField(default=Decimal(0), **CREDITS)
    held = models.DecimalField(default=Decimal(0), **CREDITS)
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


class ApiKey(models.Model):
    """A tenant's API key. The secret itself is never stored: only an HMAC of it, keyed by a pepper."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    key_id = models.CharField(max_length=KEY_ID_LENGTH, unique=True, help_text="Public part of the key.")
    digest = models.CharField(max_length=64)
    pepper_id = models.CharField(max_length=32)
    name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{KEY_PREFIX}{self.key_id}…"

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

    def set_secret(self, secret: str) -> None:
        self.pepper_id = settings.API_KEY_PEPPER_ID
        self.digest = self.digest_secret(secret, self.pepper_id)

    def secret_matches(self, secret: str) -> bool:
        if self.pepper_id not in settings.API_KEY_PEPPERS:
            return False  # its pepper was retired: the key can no longer be verified
        return hmac.compare_digest(self.digest, self.digest_secret(secret, self.pepper_id))

    # DRF's IsAuthenticated asks the authenticated principal this; a key that authenticated is one.
    is_authenticated = True

    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


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

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="ledger")
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    task = models.ForeignKey(
        "tasks.Task", on_delete=models.PROTECT, null=True, blank=True, related_name="ledger"
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
        indexes = [models.Index(fields=["tenant", "created_at"])]

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
