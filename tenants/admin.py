from django.contrib import admin

from tenants.models import ModelRuleOverride


@admin.register(ModelRuleOverride)
class ModelRuleOverrideAdmin(admin.ModelAdmin):
    list_display = ("tenant", "model_pattern", "disabled", "max_images", "max_output_tokens", "reasoning")
    list_filter = ("disabled", "reasoning")
    search_fields = ("tenant__slug", "model_pattern")
