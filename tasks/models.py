import secrets
import string
import time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from foxgate.crypto import encrypted
from tenants.models import CREDITS, ApiKey, DeliveryLog, Tenant, TenantQuerySet

TOKENS_PER_PRICE_UNIT = Decimal(1_000_000)


class Model(models.Model):
    """A model callers may ask for, by its public name."""

    class Capability(models.TextChoices):
        TEXT = "text"
        VISION = "vision"
        VIDEO = "video"
        AUDIO = "audio"
        TOOLS = "tools"
        JSON_SCHEMA = "json_schema"
        REASONING = "reasoning"

    class Kind(models.TextChoices):
        CHAT = "chat"
        EMBEDDING = "embedding"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(
        max_length=16,
        choices=Kind.choices,
        default=Kind.CHAT,
        help_text="chat models answer generations; embedding models POST /v1/embeddings",
    )
    capabilities = models.JSONField(
        default=list, help_text="Subset of text, vision, video, audio, tools, json_schema, reasoning."
    )
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name

    def current_price(self, group: str = "") -> "Price | None":
        """The latest price for the tenant group, or else the latest price for every group."""
        prices = self.prices.order_by("-version")
        return (group and prices.filter(group=group).first()) or prices.filter(group="").first()

    @property
    def output_cap(self) -> int:
        return self.max_output_tokens or settings.DEFAULT_OUTPUT_CAP


class Price(models.Model):
    """One version of a model's price, in credits per million tokens. Prices are appended, never edited,
    so every charge can name the version it used."""

    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="prices")
    group = models.CharField(
        max_length=64, blank=True, help_text="Tenant group this price is for; blank is every other group."
    )
    version = models.PositiveIntegerField()
    input_per_million = models.DecimalField(**CREDITS)
    cached_input_per_million = models.DecimalField(
        null=True, blank=True, help_text="Blank charges cached input as input.", **CREDITS
    )
    cache_write_per_million = models.DecimalField(
        null=True,
        blank=True,
        help_text="Input written to a 5-minute prompt cache; blank: as input.",
        **CREDITS,
    )
    cache_write_1h_per_million = models.DecimalField(
        null=True, blank=True, help_text="Input written to a 1-hour prompt cache; blank: as input.", **CREDITS
    )
    output_per_million = models.DecimalField(**CREDITS)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model", "group", "version"], name="price_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.model} {self.group or 'all groups'} v{self.version}"

    def cost(
        self,
        *,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
    ) -> Decimal:
        """What the tokens cost. `input_tokens` counts all the input, cached and cache-written included;
        each of those parts at its own rate, or at the input rate where the price has none."""
        rates = [
            (cached_input_tokens, self.cached_input_per_million),
            (cache_write_tokens, self.cache_write_per_million),
            (cache_write_1h_tokens, self.cache_write_1h_per_million),
        ]
        plain_input = input_tokens - sum(tokens for tokens, _ in rates)
        return (
            plain_input * self.input_per_million
            + sum(tokens * (self.input_per_million if rate is None else rate) for tokens, rate in rates)
            + output_tokens * self.output_per_million
        ) / TOKENS_PER_PRICE_UNIT


class Channel(models.Model):
    """An upstream that serves models: one provider endpoint, its credentials, and its health.

    Routing takes the highest-priority channels that serve a model and are healthy, weighted at random
    among them. The circuit breaker state lives here, in the database, so every worker agrees on it."""

    class Provider(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible"
        ANTHROPIC = "anthropic", "Anthropic Messages"
        GEMINI = "gemini", "Google Gemini"

    class Circuit(models.TextChoices):
        CLOSED = "closed"  # healthy: takes traffic
        OPEN = "open"  # cooling down until circuit_open_until
        HALF_OPEN = "half_open"  # one trial request is in flight

    name = models.CharField(max_length=200, unique=True)
    provider = models.CharField(max_length=32, choices=Provider.choices)
    base_url = models.CharField(
        max_length=500, help_text="As the provider's SDK takes it; OpenAI-compatible ones end in /v1."
    )
    # Encrypted at rest (foxgate/crypto.py); read and write it through `api_key`.
    api_key_encrypted = models.TextField(blank=True, editable=False)
    api_key = encrypted("api_key_encrypted")
    served_models = models.ManyToManyField(Model, related_name="channels")
    model_mapping = models.JSONField(
        default=dict, blank=True, help_text="Public model name → the name this upstream knows it by."
    )
    priority = models.IntegerField(default=0, help_text="Higher first; lower ones are the fallback.")
    weight = models.PositiveIntegerField(default=1, help_text="Share of traffic among equal priorities.")
    timeout_seconds = models.FloatField(null=True, blank=True, help_text="Per call; blank uses the default.")
    max_concurrency = models.PositiveIntegerField(null=True, blank=True, help_text="Calls in flight at once.")
    enabled = models.BooleanField(default=True)
    disabled_reason = models.TextField(blank=True)
    circuit_state = models.CharField(max_length=16, choices=Circuit.choices, default=Circuit.CLOSED)
    circuit_open_until = models.DateTimeField(null=True, blank=True)
    circuit_reason = models.TextField(blank=True)
    circuit_changed_at = models.DateTimeField(null=True, blank=True)
    # The operator's "test connection": requested by the admin, run by the cluster (tasks/relay/probe.py).
    # Separate from the breaker on purpose: a probe is a check, and its failure never routes traffic away.
    probe_requested_at = models.DateTimeField(null=True, blank=True)
    probe_finished_at = models.DateTimeField(null=True, blank=True)
    probe_ok = models.BooleanField(null=True, blank=True)
    probe_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    probe_message = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(weight__gte=1), name="channel_weight_positive")
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def timeout(self) -> float:
        return self.timeout_seconds or settings.UPSTREAM_TIMEOUT

    def upstream_model(self, public_name: str) -> str:
        return self.model_mapping.get(public_name, public_name)

    @property
    def probe_pending(self) -> bool:
        """A probe was asked for and no result newer than the request is recorded yet."""
        if self.probe_requested_at is None:
            return False
        return self.probe_finished_at is None or self.probe_finished_at < self.probe_requested_at


TASK_ID_ALPHABET = string.ascii_lowercase + string.digits
TASK_ID_SUFFIX = 8


def new_task_id() -> str:
    """`task-llmrouter-<unix time>-<8 random base-36 digits>`, the digits from one draw of 64 random bits.

    One draw, not a `secrets.choice` per digit: each of those asked the operating system for random bytes
    (14 system calls per id on average), and each such call in a busy web process lets the GIL go to
    another thread. 64 bits cover the 36**8 suffixes evenly to within one part in six million."""
    bits = secrets.randbits(64)
    digits = []
    for _ in range(TASK_ID_SUFFIX):
        bits, digit = divmod(bits, len(TASK_ID_ALPHABET))
        digits.append(TASK_ID_ALPHABET[digit])
    return f"task-llmrouter-{int(time.time())}-{''.join(digits)}"


class Task(models.Model):
    """One generation request, whatever its mode: the API's task object."""

    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)
    UNFINISHED = (Status.PENDING, Status.PROCESSING)

    id = models.CharField(primary_key=True, max_length=64, default=new_task_id)
    # Foreign keys whose lookups an index of Meta.indexes already serves (it leads with the same column)
    # have no index of their own: every one is written on each of a task's insert and updates.
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="tasks", db_index=False)
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="tasks", db_index=False)
    model = models.CharField(max_length=200, help_text="The model name exactly as submitted.")
    catalog_model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="tasks")
    price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="tasks")
    protocol = models.CharField(max_length=16)
    dialect = models.CharField(
        max_length=16,
        choices=[
            ("foxapi", "FoxAPI task"),
            ("openai", "OpenAI chat completions"),
            ("anthropic", "Anthropic messages"),
        ],
        default="foxapi",
        help_text="The API the request came in through.",
    )
    request = models.JSONField(help_text="The normalized request: messages and generation parameters.")
    # The caller's attribution (a request's `user` and `metadata`), kept beside the request rather than in
    # it: spend is broken down by them for as long as the task row lives, whatever happens to its content.
    end_user = models.CharField(max_length=256, blank=True, help_text="The end user the request names.")
    tags = models.JSONField(default=dict, blank=True, help_text="The request's metadata: string tags.")
    stream = models.BooleanField(default=False)
    sync = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField(default=0)
    result = models.JSONField(null=True, blank=True, help_text="The ChatCompletion, once completed.")
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    user_group = models.CharField(max_length=64)
    channel = models.ForeignKey(
        Channel,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The channel whose call decided the outcome.",
        db_index=False,  # task_by_channel serves it
    )
    credits_reserved = models.DecimalField(**CREDITS)
    credits_charged = models.DecimalField(null=True, blank=True, **CREDITS)
    charge_basis = models.CharField(
        max_length=24, blank=True, help_text="What the charge was computed from (see tenants.services)."
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # While processing, the worker process running the task renews its lease every few seconds; a lapsed
    # lease means that process died, and reclaim runs the task again (tasks/relay/reclaim.py).
    lease_owner = models.CharField(max_length=128, blank=True, help_text="host:pid of the running process.")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Set when the task was cancelled while processing: its worker stops the call and settles it
    # (tasks.services.task_cancel).
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    callback_url = models.CharField(
        max_length=2048, blank=True, help_text="Where the final task is POSTed (tasks/callbacks.py)."
    )
    # When the retention job erased the request and the answer (tasks/retention.py); the row, its usage and
    # its charges stay.
    content_pruned_at = models.DateTimeField(null=True, blank=True)
    # The W3C traceparent of the task's admission span, which the worker's spans continue
    # (foxgate/tracing.py); empty when not tracing.
    traceparent = models.CharField(max_length=55, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "-created_at"]),
            models.Index(fields=["status", "created_at"]),
            # admin task history: newest first, filtered by any of these
            models.Index(fields=["-created_at"], name="task_newest"),
            models.Index(fields=["api_key", "-created_at"], name="task_by_key"),
            models.Index(fields=["model", "-created_at"], name="task_by_model"),
            models.Index(fields=["channel", "-created_at"], name="task_by_channel"),
            models.Index(
                fields=["error_code", "-created_at"], name="task_by_error", condition=~models.Q(error_code="")
            ),
            models.Index(fields=["finished_at"], name="task_finished"),  # the usage rollup's scan
            # callbacks_resume's scan: only tasks with a callback
            models.Index(fields=["finished_at"], name="task_callback", condition=~models.Q(callback_url="")),
            # reclaim's scan for lapsed leases
            models.Index(
                fields=["lease_expires_at"], name="task_lease", condition=models.Q(status="processing")
            ),
            # concurrency limits count a key's or tenant's unfinished tasks
            models.Index(
                fields=["api_key"],
                name="task_unfinished_by_key",
                condition=models.Q(status__in=["pending", "processing"]),
            ),
            models.Index(
                fields=["tenant"],
                name="task_unfinished_by_tenant",
                condition=models.Q(status__in=["pending", "processing"]),
            ),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def upstream_parameters(self) -> dict[str, Any]:
        """The OpenAI chat parameters sent upstream beside the messages (top_p, stop, tools...). Tasks
        admitted before these had a key of their own kept top_p and stop beside the messages."""
        if "parameters" in self.request:
            return self.request["parameters"]
        return {k: self.request[k] for k in ("top_p", "stop") if self.request.get(k) is not None}

    # The span of the run settling the task, for settlement's span to join (foxgate/tracing.py).
    trace_span: Any = None

    # Whether the request was stored sealed (its tenant stores no content, tasks/retention.py), as the
    # engine's claim read it: the answer is then stored sealed too.
    content_sealed: bool = False

    # Whether the tenant has an alert rule, as the engine's claim read it (tasks/relay/engine.py), so that
    # settling a task of a tenant without rules costs no statement; None: not read.
    alerts_watched: bool | None = None

    @property
    def attribution(self) -> dict[str, Any]:
        """The task's end user and tags as a request names them (`user`, `metadata`)."""
        named = {"user": self.end_user, "metadata": self.tags}
        return {name: value for name, value in named.items() if value}

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class IdempotencyKey(models.Model):
    """A submit's Idempotency-Key (tasks/services.py task_submit): the same key from the same API key
    within IDEMPOTENCY_HOURS answers the first request's task. Inserted in the admission statement with
    the task, so of concurrent duplicates exactly one is admitted."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(
        max_length=64, help_text="SHA-256 of the request the key first came with."
    )
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_key_unique")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_key_age")]

    def __str__(self) -> str:
        return f"{self.key} -> {self.task_id}"


class CallbackDelivery(DeliveryLog):
    """A task's callback (tasks/callbacks.py): the final task object POSTed to its callback_url."""

    task = models.OneToOneField(Task, on_delete=models.CASCADE, related_name="callback")
    url = models.CharField(max_length=2048)

    class Meta:
        verbose_name_plural = "callback deliveries"

    def __str__(self) -> str:
        return f"{self.task_id} to {self.url}: {self.status}"


class TaskAttempt(models.Model):
    """One upstream call made for a task."""

    # attempt_number_unique and the (channel, started_at) index serve these keys' lookups.
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="attempts", db_index=False)
    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="attempts", db_index=False)
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    first_token_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Streams: time to first token."
    )
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "number"], name="attempt_number_unique")]
        indexes = [
            models.Index(fields=["channel", "started_at"]),  # breaker windows, channel health pages
            models.Index(
                fields=["channel"], name="attempt_in_flight", condition=models.Q(finished_at__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} #{self.number}"


class StreamChunk(models.Model):
    """One `chat.completion.chunk` of a streamed task, numbered from 0, kept for replay and resumption
    until STREAM_RETENTION_SECONDS after the task ends."""

    task = models.ForeignKey(  # chunk_seq_unique serves its lookups
        Task, on_delete=models.CASCADE, related_name="chunks", db_index=False
    )
    seq = models.PositiveIntegerField()
    data = models.TextField(help_text="The chunk's JSON, exactly as sent to clients.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "seq"], name="chunk_seq_unique")]

    def __str__(self) -> str:
        return f"{self.task_id} #{self.seq}"


class UsageCounts(models.Model):
    """A rollup bucket's day and tenant, and what its finished tasks add up to."""

    day = models.DateField()
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    tasks = models.PositiveIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    credits = models.DecimalField(default=Decimal(0), **CREDITS)

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True


class UsageRollup(UsageCounts):
    """Finished tasks summed per day, tenant, key, model, serving channel and outcome.

    Maintained by a scheduled job (tasks/rollups.py), so dashboards and failure views read thousands of
    rows, never the millions of tasks."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    model = models.CharField(max_length=200)
    channel = models.ForeignKey(Channel, on_delete=models.SET_NULL, null=True, related_name="+")
    status = models.CharField(max_length=16)
    error_code = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "tenant", "api_key", "model", "channel", "status", "error_code"],
                name="rollup_bucket_unique",
                nulls_distinct=False,
            )
        ]
        indexes = [models.Index(fields=["tenant", "day"]), models.Index(fields=["day"])]

    def __str__(self) -> str:
        return f"{self.day} {self.tenant_id} {self.model} {self.status}: {self.tasks}"


class AttributedUsage(UsageCounts):
    """Finished tasks summed per day, tenant and attribution: per end user (kind `user`, the user in
    `value`) and per tag (kind `tag`, the tag's key in `tag` and its value in `value`). Maintained with
    the usage rollup, by the same job and watermark."""

    class Kind(models.TextChoices):
        USER = "user"
        TAG = "tag"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    tag = models.CharField(max_length=64, blank=True)
    value = models.CharField(max_length=512)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "tenant", "kind", "tag", "value"], name="attributed_usage_bucket_unique"
            )
        ]
        indexes = [models.Index(fields=["tenant", "day"]), models.Index(fields=["day"])]

    def __str__(self) -> str:
        name = self.value if self.kind == self.Kind.USER else f"{self.tag}={self.value}"
        return f"{self.day} {self.tenant_id} {self.kind} {name}: {self.credits}"


class RetentionWatermark(models.Model):
    """How far the retention job has erased content (one row): of every task finished before
    `pruned_before`, and of the tasks of tenants that store no content finished before `sealed_before`."""

    pruned_before = models.DateTimeField()
    sealed_before = models.DateTimeField()

    def __str__(self) -> str:
        return f"content pruned before {self.pruned_before}"


class RollupWatermark(models.Model):
    """How far the usage rollup has counted finished tasks (one row)."""

    finished_before = models.DateTimeField()

    def __str__(self) -> str:
        return f"rolled up to {self.finished_before}"
