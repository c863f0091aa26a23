"""FoxGate settings: every value comes from the environment, with safe defaults for local use.

There are no per-environment settings files. `FOXGATE_PRODUCTION=1` turns on the checks that refuse
to start with a development secret or with debug on.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from foxgate.database import database_settings

BASE_DIR = Path(__file__).resolve().parent.parent
# The top-level templates/ folder, reached through the foxgate/templates link so the same path works in
# the checkout and in an installed wheel, which carries the folder's files there (pyproject.toml).
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_map(name: str, default: str = "") -> dict[str, str]:
    """`id1=value1,id2=value2` → {"id1": "value1", "id2": "value2"}."""
    pairs = {}
    for item in env_list(name, default):
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ImproperlyConfigured(f"{name} must look like id=value,id=value")
        pairs[key] = value
    return pairs


DEV_SECRET_KEY = "foxgate-development-secret-key-never-use-in-production"  # noqa: S105
DEV_KEY_PEPPER = "1=foxgate-development-pepper"
DEV_SECRET_KEYS = "ZGV2ZWxvcG1lbnQta2V5LW5ldmVyLWluLXByb2R1Y3Q="  # noqa: S105 - a development Fernet key

PRODUCTION = env_bool("FOXGATE_PRODUCTION")
DEBUG = env_bool("FOXGATE_DEBUG", default=not PRODUCTION)
SECRET_KEY = env_str("FOXGATE_SECRET_KEY", DEV_SECRET_KEY)
ALLOWED_HOSTS = env_list("FOXGATE_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
# Local state (the embedded database) lives where FoxGate is run from, never inside site-packages.
DATA_DIR = Path(env_str("FOXGATE_DATA_DIR", ".foxgate")).absolute()

# API key digests are HMACs keyed by a pepper kept apart from SECRET_KEY. Several peppers may be
# configured at once so they can rotate: new keys use the current one, old keys keep their pepper id.
API_KEY_PEPPERS = env_map("FOXGATE_API_KEY_PEPPERS", DEV_KEY_PEPPER)
API_KEY_PEPPER_ID = env_str("FOXGATE_API_KEY_PEPPER_ID", next(iter(API_KEY_PEPPERS), ""))
if API_KEY_PEPPER_ID not in API_KEY_PEPPERS:
    raise ImproperlyConfigured("FOXGATE_API_KEY_PEPPER_ID must name one of FOXGATE_API_KEY_PEPPERS")

# A key revoked or expired in one process is refused by every process within this many seconds.
KEY_CACHE_SECONDS = float(env_str("FOXGATE_KEY_CACHE_SECONDS", "1"))

# Fernet keys, newest first, that encrypt upstream API keys at rest (foxgate/crypto.py).
SECRET_KEYS = env_list("FOXGATE_SECRET_KEYS", DEV_SECRET_KEYS)

if PRODUCTION:
    unsafe = []
    if DEBUG:
        unsafe.append("FOXGATE_DEBUG is on")
    if SECRET_KEY == DEV_SECRET_KEY:
        unsafe.append("FOXGATE_SECRET_KEY is the development default")
    if env_str("FOXGATE_API_KEY_PEPPERS", DEV_KEY_PEPPER) == DEV_KEY_PEPPER:
        unsafe.append("FOXGATE_API_KEY_PEPPERS is the development default")
    if env_str("FOXGATE_SECRET_KEYS", DEV_SECRET_KEYS) == DEV_SECRET_KEYS:
        unsafe.append("FOXGATE_SECRET_KEYS is the development default")
    if not env_str("DATABASE_URL"):
        unsafe.append("DATABASE_URL is not set (the embedded database is for local use)")
    if unsafe:
        raise ImproperlyConfigured("refusing to start in production mode: " + "; ".join(unsafe))

# Production is served over HTTPS (TLS usually ends at a load balancer): cookies never travel in clear.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = PRODUCTION
# Behind a TLS-terminating proxy, requests arrive as http; believe the proxy's X-Forwarded-Proto only when
# told to (the proxy must set it), else the admin's sign-in fails its CSRF origin check.
if env_bool("FOXGATE_TRUST_X_FORWARDED_PROTO"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "foxgate",
    "unfold",  # the admin theme; before django.contrib.admin so its templates win
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "tenants",
    "tasks",
]

# Every one async-capable, and none hops to a thread on an API call (foxgate/middleware.py): Django's own
# security, common and clickjacking middleware run their hooks inline; WhiteNoise only for /static/;
# sessions, CSRF, users and messages (the admin's, foxgate/admin_middleware.py) not under /v1/.
MIDDLEWARE = [
    "foxgate.middleware.RequestIdMiddleware",
    "foxgate.errors.ErrorEnvelopeMiddleware",
    "foxgate.middleware.SecurityMiddleware",
    "foxgate.middleware.StaticFiles",
    "foxgate.admin_middleware.SessionMiddleware",
    "foxgate.middleware.CommonMiddleware",
    "foxgate.admin_middleware.CsrfViewMiddleware",
    "foxgate.admin_middleware.AuthenticationMiddleware",
    "foxgate.admin_middleware.MessageMiddleware",
    "foxgate.middleware.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "foxgate.urls"
# The only sign-in page is the admin's; Django's default (/accounts/profile/) does not exist here.
LOGIN_URL = "admin:login"
LOGIN_REDIRECT_URL = "admin:index"
ASGI_APPLICATION = "foxgate.asgi.application"

# Single sign-on to the admin site with OpenID Connect (tenants/sso.py), on when an issuer is set; password
# sign-in stays on unless FOXGATE_PASSWORD_LOGIN=0.
OIDC_ISSUER = env_str("FOXGATE_OIDC_ISSUER").rstrip("/")
PASSWORD_LOGIN = env_bool("FOXGATE_PASSWORD_LOGIN", True)
if not (OIDC_ISSUER or PASSWORD_LOGIN):
    raise ImproperlyConfigured("FOXGATE_PASSWORD_LOGIN=0 needs FOXGATE_OIDC_ISSUER: else nobody can sign in")
AUTHENTICATION_BACKENDS = [
    *(["tenants.sso.SsoBackend"] if OIDC_ISSUER else []),
    *(["django.contrib.auth.backends.ModelBackend"] if PASSWORD_LOGIN else []),
]
OIDC_RP_CLIENT_ID = env_str("FOXGATE_OIDC_CLIENT_ID")
OIDC_RP_CLIENT_SECRET = env_str("FOXGATE_OIDC_CLIENT_SECRET")
OIDC_RP_SIGN_ALGO = env_str("FOXGATE_OIDC_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = env_str("FOXGATE_OIDC_SCOPES", "openid email profile")
OIDC_GROUPS_CLAIM = env_str("FOXGATE_OIDC_GROUPS_CLAIM", "groups")
OIDC_GROUP_ROLES = env_str("FOXGATE_OIDC_GROUP_ROLES")  # JSON: group -> "staff" or "TENANT:ROLE"
OIDC_USE_PKCE = True
OIDC_AUTHENTICATE_CLASS = "tenants.sso.SsoAuthenticationRequestView"
OIDC_TIMEOUT = 10
LOGIN_REDIRECT_URL_FAILURE = "/sso/refused/"

# A submit's Idempotency-Key answers its first request's task for this long (tasks/services.py).
IDEMPOTENCY_HOURS = env_int("FOXGATE_IDEMPOTENCY_HOURS", 24)

# Alerts (tenants/alerts.py): webhooks and email, sent from the worker cluster.
ALLOW_PRIVATE_WEBHOOKS = env_bool("FOXGATE_ALLOW_PRIVATE_WEBHOOKS")
WEBHOOK_CA_BUNDLE = env_str("FOXGATE_WEBHOOK_CA_BUNDLE")  # a CA file to trust besides the usual ones
EMAIL_BACKEND = env_str("FOXGATE_EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_FILE_PATH = env_str("FOXGATE_EMAIL_FILE_PATH") or None
EMAIL_HOST = env_str("FOXGATE_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("FOXGATE_EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("FOXGATE_EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("FOXGATE_EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("FOXGATE_EMAIL_USE_TLS")
DEFAULT_FROM_EMAIL = env_str("FOXGATE_EMAIL_FROM", "foxgate@localhost")

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [TEMPLATES_DIR],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tenants.sso.sign_in_options",
            ],
        },
    },
]

# Web servers pool their connections (foxgate/asgi.py turns FOXGATE_DB_POOL on); the worker cluster,
# which forks, and commands connect plainly.
DATABASES = {
    "default": database_settings(
        env_str("DATABASE_URL"),
        DATA_DIR,
        pool_size=env_int("FOXGATE_DB_POOL_SIZE", 20) if env_bool("FOXGATE_DB_POOL") else 0,
        pool_timeout=float(env_str("FOXGATE_DB_POOL_TIMEOUT", "10")),
        prepare=env_bool("FOXGATE_DB_PREPARE", True),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# WhiteNoise serves static files (admin, API docs) from the app itself, under ASGI too; finding them
# in the installed apps means no collectstatic step and no STATIC_ROOT.
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["foxgate.parsers.LimitedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "foxgate.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "URL_FORMAT_OVERRIDE": None,  # else any `?format=xyz` on an API call is a 404
}


def _nav(
    title: str, icon: str, url_name: str, *, platform: bool = False, access: str = "sees_tenant_pages"
) -> dict:
    """A link shown when tenants.access.<access>(request) allows it: the rule its model admin reads."""
    from django.urls import reverse_lazy

    access = "sees_platform_pages" if platform else access
    return {
        "title": title,
        "icon": icon,
        "link": reverse_lazy(url_name),
        "permission": f"tenants.access.{access}",
    }


UNFOLD = {
    "SITE_TITLE": "FoxGate",
    "SITE_HEADER": "FoxGate",
    "SITE_SYMBOL": "hub",
    "SHOW_HISTORY": False,
    "SIDEBAR": {
        "show_search": False,
        "show_all_applications": False,
        "navigation": [
            {
                "title": "Overview",
                "items": [
                    _nav("Usage and spend", "monitoring", "admin:tasks_usage", access="sees_money_pages"),
                    _nav("Failures", "error", "admin:tasks_failures"),
                    _nav("Task history", "list_alt", "admin:tasks_task_changelist"),
                ],
            },
            {
                "title": "Organisations",
                "items": [
                    _nav(
                        "Tenants", "apartment", "admin:tenants_tenant_changelist", access="sees_money_pages"
                    ),
                    _nav("API keys", "key", "admin:tenants_apikey_changelist"),
                    _nav("Members", "group", "admin:tenants_membership_changelist"),
                    _nav("Model rule overrides", "rule", "admin:tenants_modelruleoverride_changelist"),
                    _nav(
                        "Ledger",
                        "receipt_long",
                        "admin:tenants_ledgerentry_changelist",
                        access="sees_money_pages",
                    ),
                    _nav(
                        "End users' spend",
                        "person_search",
                        "admin:tenants_enduserspend_changelist",
                        access="sees_money_pages",
                    ),
                ],
            },
            {
                "title": "Alerts",
                "items": [
                    _nav(
                        "Alert rules",
                        "notifications",
                        "admin:tenants_alertrule_changelist",
                        access="sees_money_pages",
                    ),
                    _nav(
                        "Alerts sent", "campaign", "admin:tenants_alert_changelist", access="sees_money_pages"
                    ),
                    _nav(
                        "Webhooks",
                        "webhook",
                        "admin:tenants_webhookendpoint_changelist",
                        access="sees_money_pages",
                    ),
                    _nav(
                        "Webhook deliveries",
                        "outbox",
                        "admin:tenants_webhookdelivery_changelist",
                        access="sees_money_pages",
                    ),
                ],
            },
            {
                "title": "Platform",
                "items": [
                    _nav("Channels", "hub", "admin:tasks_channel_changelist", platform=True),
                    _nav("Models", "model_training", "admin:tasks_model_changelist", platform=True),
                    _nav("Prices", "sell", "admin:tasks_price_changelist", platform=True),
                    _nav(
                        "Audit log", "history", "admin:tenants_auditevent_changelist", access="sees_audit_log"
                    ),
                    _nav("Users", "person", "admin:auth_user_changelist", platform=True),
                    _nav("SSO identities", "badge", "admin:tenants_ssoidentity_changelist", platform=True),
                ],
            },
        ],
    },
    "COLORS": {
        "primary": {
            "50": "#fff7ed",
            "100": "#ffedd5",
            "200": "#fed7aa",
            "300": "#fdba74",
            "400": "#fb923c",
            "500": "#f97316",
            "600": "#ea580c",
            "700": "#c2410c",
            "800": "#9a3412",
            "900": "#7c2d12",
            "950": "#431407",
        }
    },
}

SPECTACULAR_SETTINGS = {
    "TITLE": "FoxGate API",
    "DESCRIPTION": "The FoxAPI task dialect: submit a generation, poll or stream the task, get an OpenAI "
    "ChatCompletion back. Authenticate with `Authorization: Bearer sk-...`.",
    "VERSION": "1",
    "SCHEMA_PATH_PREFIX": "/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "REDOC_DIST": "SIDECAR",  # the docs page's assets are served from this server, not a CDN
    "COMPONENT_SPLIT_REQUEST": True,
    # Fields named `type` with different choices each: one name per set, not a numbered one
    "ENUM_NAME_OVERRIDES": {
        "FunctionTypeEnum": "tasks.serializers.FUNCTION_TYPES",
        "ResponseFormatTypeEnum": "tasks.serializers.RESPONSE_FORMATS",
        "AnthropicToolChoiceTypeEnum": "tasks.serializers.ANTHROPIC_TOOL_CHOICES",
        "AnthropicToolTypeEnum": "tasks.serializers.ANTHROPIC_TOOL_TYPES",
    },
}

# Request bodies above this are refused with 413 (inline base64 media makes bodies large).
MAX_REQUEST_BYTES = env_int("FOXGATE_MAX_REQUEST_BYTES", 20 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES
# Stream chunks stay replayable this long after their task ends; then the stream answers 410.
STREAM_RETENTION_SECONDS = env_int("FOXGATE_STREAM_RETENTION_SECONDS", 15 * 60)
# Days a finished task's request and answer are kept (tasks/retention.py); 0 keeps them for ever.
CONTENT_RETENTION_DAYS = env_int("FOXGATE_CONTENT_RETENTION_DAYS", 0)
# A silent stream gets a keep-alive comment this often, so proxies do not cut it.
STREAM_KEEPALIVE_SECONDS = float(env_str("FOXGATE_STREAM_KEEPALIVE_SECONDS", "15"))
# How long a sync request waits for its task before answering 504 task_still_running.
SYNC_WAIT_SECONDS = float(env_int("FOXGATE_SYNC_WAIT_SECONDS", 300))

# The worker cluster runs every upstream call. Its queue lives in PostgreSQL (the ORM broker), so
# the database stays the one required service.
# The relay engine (tasks/relay/engine.py): each worker process runs one event loop holding up to
# WORKER_CONCURRENCY generations; the default cluster (4 processes x 256) holds 1,024 at once.
WORKER_CONCURRENCY = env_int("FOXGATE_WORKER_CONCURRENCY", 256)
# Database connections per worker process, whatever the load: RELAY_DB_THREADS Django connections (one
# per thread running the relay's ORM statements) plus RELAY_CHUNK_CONNECTIONS for stream chunks.
RELAY_DB_THREADS = env_int("FOXGATE_RELAY_DB_THREADS", 4)
RELAY_CHUNK_CONNECTIONS = env_int("FOXGATE_RELAY_CHUNK_CONNECTIONS", 2)
LEASE_SECONDS = env_int("FOXGATE_LEASE_SECONDS", 15)  # a task whose lease lapsed this long ago is rerun
LEASE_RENEW_SECONDS = env_int("FOXGATE_LEASE_RENEW_SECONDS", 5)  # also how often each loop reclaims
DRAIN_SECONDS = env_int("FOXGATE_DRAIN_SECONDS", 30)  # on SIGTERM, in-flight work gets this long
_JOB_TIMEOUT = env_int("FOXGATE_TASK_TIMEOUT", 720)

# django-q2 delivers one job per task; the job only admits the task to its process's loop, so it returns
# in milliseconds, or blocks while the loop is full (at most until one generation ends).
Q_CLUSTER = {
    "name": env_str(
        "FOXGATE_CLUSTER_NAME", "foxgate"
    ),  # also the queue's name: clusters may share a database
    "orm": "default",
    "workers": env_int("FOXGATE_WORKERS", 4),
    # Kills a job blocked while its loop is full: longer than any generation (deadline + one call).
    "timeout": _JOB_TIMEOUT,
    # Redelivery of a job whose worker died; the lease (reclaim) recovers its task long before this.
    "retry": _JOB_TIMEOUT + 60,
    "max_attempts": 3,
    # A recycled or over-memory worker exits and takes its loop's generations with it: never recycle.
    "recycle": 1_000_000_000,
    "max_rss": None,
    # The pusher wakes on NOTIFY (foxgate/broker.py); `poll` is only its safety net, for locks that
    # lapsed (a dead cluster's jobs): an idle cluster claims once a second, not twenty times.
    "poll": 1,
    "catch_up": False,
    "save_limit": -1,  # no result row per successful generation; failed jobs are still stored
    # Jobs the pusher takes per poll and may hold ahead of the workers: enough to fill empty loops in
    # a few polls, few enough that a dead cluster strands little (its jobs wait for `retry`).
    "bulk": env_int("FOXGATE_QUEUE_BULK", 50),
    "queue_limit": env_int("FOXGATE_QUEUE_LIMIT", 100),
    "ack_failures": True,
    "label": "Worker cluster",
    "broker_class": "foxgate.broker.PostgresBroker",  # claims with SKIP LOCKED, wakes on NOTIFY
}

# Relay behaviour.
UPSTREAM_TIMEOUT = float(env_int("FOXGATE_UPSTREAM_TIMEOUT", 120))  # per call, unless the channel says
MAX_ATTEMPTS = env_int("FOXGATE_MAX_ATTEMPTS", 3)  # calls per task, each on a different channel
TASK_DEADLINE_SECONDS = env_int("FOXGATE_TASK_DEADLINE_SECONDS", 540)  # no new attempt after this long
RECLAIM_PENDING_SECONDS = env_int("FOXGATE_RECLAIM_PENDING_SECONDS", 600)  # then a pending task is requeued
# Circuit breakers (tasks/routing.py).
BREAKER_WINDOW_SECONDS = env_int("FOXGATE_BREAKER_WINDOW_SECONDS", 60)
BREAKER_MIN_REQUESTS = env_int("FOXGATE_BREAKER_MIN_REQUESTS", 5)
BREAKER_ERROR_RATE = float(env_str("FOXGATE_BREAKER_ERROR_RATE", "0.5"))
BREAKER_COOLDOWN_SECONDS = env_int("FOXGATE_BREAKER_COOLDOWN_SECONDS", 30)
DEFAULT_OUTPUT_CAP = env_int("FOXGATE_DEFAULT_OUTPUT_CAP", 4096)

# Bearer token /metrics requires, if set.
METRICS_TOKEN = env_str("FOXGATE_METRICS_TOKEN")

LOG_FORMAT = env_str("FOXGATE_LOG_FORMAT", "json" if PRODUCTION else "text")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured("FOXGATE_LOG_FORMAT must be json or text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "foxgate.logs.ContextFilter"}},
    "formatters": {
        "json": {"()": "foxgate.logs.JsonFormatter"},
        "text": {
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(tenant)s %(task_id)s] %(message)s"
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["context"], "formatter": LOG_FORMAT}
    },
    "root": {"handlers": ["console"], "level": env_str("FOXGATE_LOG_LEVEL", "INFO")},
    "loggers": {
        "pgserver": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        # django-q2 logs every enqueue, schedule run and processed job at INFO: noise that buries the
        # demo's key and every log worth reading. Shown only when FOXGATE_LOG_LEVEL=DEBUG.
        "django-q": {"level": "DEBUG" if env_str("FOXGATE_LOG_LEVEL", "INFO") == "DEBUG" else "WARNING"},
        # Django's own console handler (on with DEBUG) would print every 4xx a second time, bare.
        "django": {"handlers": [], "level": "INFO"},
    },
}
APPEND_SLASH = False
