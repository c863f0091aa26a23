"""Shapes of the API's answers, for the OpenAPI schema (drf-spectacular).

The answers themselves are built by tasks/selectors.py and foxgate/errors.py;
tests/tasks/test_openapi.py checks that real answers and these shapes agree key for key."""

from rest_framework import serializers


class ErrorDetailSchema(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    code = serializers.CharField()
    param = serializers.CharField(allow_null=True)


class ErrorSchema(serializers.Serializer):
    error = ErrorDetailSchema()


class ChatMessageSchema(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField(allow_null=True)
    reasoning_content = serializers.CharField(required=False)


class ChatChoiceSchema(serializers.Serializer):
    index = serializers.IntegerField()
    message = ChatMessageSchema()
    finish_reason = serializers.CharField(allow_null=True)


class UsageSchema(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class ChatCompletionSchema(serializers.Serializer):
    """An OpenAI `chat.completion`, whichever provider served it."""

    id = serializers.CharField()
    object = serializers.CharField(default="chat.completion")
    created = serializers.IntegerField()
    model = serializers.CharField()
    choices = ChatChoiceSchema(many=True)
    usage = UsageSchema()


class TaskStreamSchema(serializers.Serializer):
    url = serializers.CharField()


class TaskErrorSchema(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    type = serializers.CharField(default="task_error")


class TaskUsageSchema(serializers.Serializer):
    credits_reserved = serializers.DecimalField(max_digits=20, decimal_places=6)
    credits_charged = serializers.DecimalField(max_digits=20, decimal_places=6, allow_null=True)
    user_group = serializers.CharField()


class TaskSchema(serializers.Serializer):
    id = serializers.CharField(help_text="task-llmrouter-{unix seconds}-{8 chars of [a-z0-9]}")
    object = serializers.CharField(default="llm.generation.task")
    type = serializers.CharField(default="llm")
    model = serializers.CharField(help_text="The model exactly as submitted.")
    status = serializers.ChoiceField(choices=["pending", "processing", "completed", "failed"])
    progress = serializers.IntegerField(min_value=0, max_value=100)
    created = serializers.IntegerField()
    stream = TaskStreamSchema(allow_null=True)
    results = ChatCompletionSchema(many=True, allow_null=True)
    error = TaskErrorSchema(allow_null=True)
    usage = TaskUsageSchema()


class ModelEntrySchema(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="model")
    created = serializers.IntegerField()
    owned_by = serializers.CharField()
    capabilities = serializers.ListField(
        child=serializers.ChoiceField(choices=["text", "vision", "video", "audio"])
    )


class ModelListSchema(serializers.Serializer):
    object = serializers.CharField(default="list")
    data = ModelEntrySchema(many=True)


class SpendSchema(serializers.Serializer):
    held = serializers.DecimalField(max_digits=20, decimal_places=6, help_text="Set aside for running tasks")
    period = serializers.ChoiceField(choices=["day", "month"], help_text="The budget period")
    period_start = serializers.DateTimeField()
    spend = serializers.DecimalField(max_digits=20, decimal_places=6, help_text="Charged this period")
    budget = serializers.DecimalField(max_digits=20, decimal_places=6, allow_null=True)


class TenantCreditsSchema(SpendSchema):
    balance = serializers.DecimalField(max_digits=20, decimal_places=6)
    available = serializers.DecimalField(max_digits=20, decimal_places=6, help_text="balance - held")
    user_group = serializers.CharField()


class KeyCreditsSchema(SpendSchema):
    id = serializers.CharField()
    name = serializers.CharField()


class CreditsSchema(serializers.Serializer):
    object = serializers.CharField(default="account.credits")
    tenant = TenantCreditsSchema()
    key = KeyCreditsSchema()
