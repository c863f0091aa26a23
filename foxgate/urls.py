from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from foxgate.health import healthz, readyz
from foxgate.metrics import metrics
from tenants.sso import sso_refused

HOME_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>FoxGate</title></head>
<body>
<h1>FoxGate</h1>
<p>A multi-tenant LLM gateway. Callers submit generations with an API key; operators use the admin site.</p>
<ul>
<li><a href="/v1/docs">API reference</a> (<a href="/v1/openapi.json">OpenAPI 3 schema</a>)</li>
<li><a href="/admin/">Admin site</a></li>
<li><a href="/healthz">/healthz</a> and <a href="/readyz">/readyz</a></li>
</ul>
</body></html>
"""


def home(request: HttpRequest) -> HttpResponse:
    """Whoever opens the server's address in a browser finds where to go, instead of a 404."""
    return HttpResponse(HOME_PAGE)


urlpatterns = [
    path("", home, name="home"),
    path("v1/", include("tasks.urls")),
    path("admin/", admin.site.urls),
    path("sso/refused/", sso_refused, name="sso_refused"),
    path("healthz", healthz),
    path("readyz", readyz),
    path("metrics", metrics),
]
if settings.OIDC_ISSUER:
    urlpatterns.append(path("oidc/", include("mozilla_django_oidc.urls")))
