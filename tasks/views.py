from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tasks.selectors import task_as_api, task_get
from tasks.serializers import GenerationRequestSerializer
from tasks.services import task_submit


class GenerationCreateApi(APIView):
    def post(self, request: Request) -> Response:
        serializer = GenerationRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        task = task_submit(api_key=request.user, validated=serializer.validated_data)
        return Response(task_as_api(task), headers={"X-Task-Id": task.id})


class TaskDetailApi(APIView):
    def get(self, request: Request, task_id: str) -> Response:
        return Response(task_as_api(task_get(tenant=request.auth, task_id=task_id)))
