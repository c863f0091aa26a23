from django.urls import path

from tasks import views

urlpatterns = [
    path("llm/generations", views.GenerationCreateApi.as_view(), name="generation-create"),
    path("tasks/<str:task_id>", views.TaskDetailApi.as_view(), name="task-detail"),
]
