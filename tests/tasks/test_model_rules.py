"""Model-intrinsic rules and the tenant overrides that may only tighten them."""

import pytest
from django.core.exceptions import ValidationError

from foxgate.errors import InvalidParam
from tasks.model_rules import DEFAULT_RULES, default_capabilities, rules_check, rules_for
from tenants.models import ModelRuleOverride


def request(**fields) -> dict:
    return {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": None,
        "temperature": None,
        "reasoning": None,
        "parameters": {},
    } | fields


def images(n: int) -> list[dict]:
    parts = [{"type": "image_url", "image_url": {"url": f"https://x/{i}.png"}} for i in range(n)]
    return [{"role": "user", "content": [{"type": "text", "text": "look"}, *parts]}]


@pytest.mark.parametrize(
    ("model", "expected_rule"),
    [
        ("claude-opus-4-7", "claude-*opus*"),
        ("claude-3-5-haiku", "claude-*haiku*"),
        ("claude-sonnet-4", "claude-*"),
        ("deepseek-reasoner", "deepseek-reasoner"),
        ("deepseek-chat", "deepseek-*"),
        ("GPT-4o-mini", "gpt-4o*"),
        ("o3-mini", "o3*"),
    ],
)
def test_rules_match_by_name_then_family(model, expected_rule):
    from tasks.model_rules import INTRINSIC_RULES

    assert rules_for(model) is dict(INTRINSIC_RULES)[expected_rule]


def test_unknown_models_are_bound_only_by_their_catalog_entry():
    assert rules_for("my-finetune") is DEFAULT_RULES
    assert default_capabilities("my-finetune") == ["text", "vision", "tools", "json_schema", "reasoning"]
    assert default_capabilities("gemini-2.5-flash") == [
        "text", "vision", "video", "audio", "tools", "json_schema", "reasoning"
    ]  # fmt: skip
    assert default_capabilities("deepseek-chat") == ["text", "tools", "json_schema"]
    assert default_capabilities("gpt-4-vision-preview") == ["text", "vision"]


@pytest.mark.parametrize(
    ("model", "fields", "rule", "limit_text"),
    [
        ("claude-sonnet-4", {"temperature": 1.5}, "temperature_max", "up to 1"),
        ("o1-mini", {"temperature": 0.5}, "fixed_temperature", "temperature 1"),
        ("deepseek-reasoner", {"reasoning": False}, "reasoning_required", "always reasons"),
        ("gpt-4o", {"reasoning": True}, "reasoning_refused", "does not support"),
        ("gpt-4o", {"max_tokens": 20_000}, "max_output_tokens", "16384"),
        ("gpt-4-vision-preview", {}, "requires_max_tokens", "needs max_tokens"),
        ("deepseek-chat", {"messages": images(1)}, "max_images", "does not take images"),
        (
            "gpt-4o-mini",
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "video_url", "video_url": {"url": "https://x/v.mp4"}}],
                    }
                ]
            },
            "video",
            "does not take video",
        ),
        (
            "gpt-4-vision-preview",
            {"max_tokens": 5, "parameters": {"tools": []}},
            "tools",
            "does not take tools",
        ),
        (
            "gpt-4-vision-preview",
            {"max_tokens": 5, "parameters": {"response_format": {"type": "json_object"}}},
            "json_schema",
            "structured output",
        ),
        ("claude-sonnet-4", {"parameters": {"seed": 1}}, "seed", "does not take seed"),
        ("claude-3-5-haiku", {"parameters": {"frequency_penalty": 1}}, "frequency_penalty", "does not take"),
    ],
)
def test_a_broken_rule_names_itself_and_its_limit(model, fields, rule, limit_text):
    with pytest.raises(InvalidParam) as raised:
        rules_check(model, rules_for(model), request(**fields), protocol="custom")
    assert raised.value.code == "model_rule_violation"
    assert f"rule: {rule}" in raised.value.message and limit_text in raised.value.message


def test_required_reasoning_is_switched_on_when_unset():
    assert rules_check("deepseek-reasoner", rules_for("deepseek-reasoner"), request(), protocol="text") == {
        "reasoning": True
    }


def test_overrides_tighten_but_never_loosen():
    rules = rules_for("gpt-4o")  # 10 images, 16384 output tokens
    assert rules.tightened(max_images=3, max_output_tokens=1000).max_images == 3
    assert rules.tightened(max_images=3, max_output_tokens=1000).max_output_tokens == 1000
    loosened = rules.tightened(max_images=50, max_output_tokens=1_000_000)
    assert (loosened.max_images, loosened.max_output_tokens) == (10, 16_384)
    assert rules.tightened(reasoning="required").reasoning == "refused"  # the model's nature wins
    assert rules_for("claude-sonnet-4").tightened(reasoning="refused").reasoning == "refused"


def test_catalog_capabilities_narrow_the_rules():
    rules = rules_for("gemini-2.5-pro").tightened(capabilities=["text"])
    assert (rules.max_images, rules.video, rules.audio) == (0, False, False)
    assert rules_for("gpt-4o").tightened(capabilities=["text", "vision", "video"]).video is False
    narrowed = rules_for("gpt-4o-mini").tightened(capabilities=["text"])
    assert (narrowed.tools, narrowed.json_schema, narrowed.reasoning) == (False, False, "refused")
    assert rules_for("o3-mini").tightened(capabilities=["text"]).reasoning == "required"  # it always reasons


@pytest.mark.django_db
def test_an_override_contradicting_the_models_nature_is_refused(tenant):
    override = ModelRuleOverride(tenant=tenant, model_pattern="deepseek-reasoner", reasoning="refused")
    with pytest.raises(ValidationError, match="cannot change it"):
        override.full_clean()
    ModelRuleOverride(tenant=tenant, model_pattern="claude-*", reasoning="required").full_clean()
