from django.urls import path, re_path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularRedocView

from tasks import views

urlpatterns = [
    path("llm/generations", views.GenerationCreateApi.as_view(), name="generation-create"),
    path("chat/completions", views.ChatCompletionCreateApi.as_view(), name="chat-completion-create"),
    path("messages", views.MessageCreateApi.as_view(), name="message-create"),
    path("embeddings", views.EmbeddingsCreateApi.as_view(), name="embeddings-create"),
    path(
        "llm/generations/<str:task_id>/stream", views.GenerationStreamApi.as_view(), name="generation-stream"
    ),
    path("tasks/<str:task_id>", views.TaskDetailApi.as_view(), name="task-detail"),
    path("tasks/<str:task_id>/cancel", views.TaskCancelApi.as_view(), name="task-cancel"),
    path("configs/llm_generations_models", views.GenerationModelListApi.as_view(), name="generation-models"),
    path("models", views.ModelListApi.as_view(), name="models"),
    path("account/credits", views.AccountCreditsApi.as_view(), name="account-credits"),
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    path("docs", SpectacularRedocView.as_view(url_name="openapi"), name="api-docs"),
    re_path(r"^.*$", views.RouteNotFoundApi.as_view()),
]
