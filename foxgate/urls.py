from django.contrib import admin
from django.urls import include, path

from foxgate.health import healthz, readyz
from foxgate.metrics import metrics

urlpatterns = [
    path("v1/", include("tasks.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz),
    path("readyz", readyz),
    path("metrics", metrics),
]
