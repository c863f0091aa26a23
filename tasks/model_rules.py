"""Model-intrinsic rules: what a model can take, matched by its name or family.

These are facts about models (Claude takes temperature up to 1, o-series models only run at temperature
1, DeepSeek's reasoner always reasons), not policy. A tenant's ModelRuleOverride rows can only tighten
them (tenants/models.py). A request that breaks a rule is refused before it costs anything, with a
422 `model_rule_violation` naming the rule and its limit.
"""

import fnmatch
from dataclasses import dataclass, replace
from typing import Any, Literal

from foxgate.errors import InvalidParam

Reasoning = Literal["optional", "required", "refused"]


@dataclass(frozen=True)
class ModelRules:
    max_images: int = 10
    video: bool = False
    audio: bool = False
    tools: bool = True
    json_schema: bool = True  # structured output: response_format json_object and json_schema
    parameters_refused: frozenset[str] = frozenset()  # OpenAI chat parameters the model has no use for
    requires_max_tokens: bool = False
    max_output_tokens: int | None = None
    reasoning: Reasoning = "optional"
    temperature_max: float = 2.0
    fixed_temperature: float | None = None  # the only temperature the model runs at

    @property
    def capabilities(self) -> list[str]:
        flags = {
            "text": True,
            "vision": self.max_images > 0,
            "video": self.video,
            "audio": self.audio,
            "tools": self.tools,
            "json_schema": self.json_schema,
            "reasoning": self.reasoning != "refused",
        }
        return [name for name, present in flags.items() if present]

    def tightened(
        self,
        *,
        capabilities: list[str] | None = None,
        max_images: int | None = None,
        max_output_tokens: int | None = None,
        reasoning: Reasoning | None = None,
    ) -> "ModelRules":
        """These rules narrowed by the catalog or a tenant's override; never loosened."""
        rules = self
        if capabilities is not None:
            rules = replace(
                rules,
                max_images=rules.max_images if "vision" in capabilities else 0,
                video=rules.video and "video" in capabilities,
                audio=rules.audio and "audio" in capabilities,
                tools=rules.tools and "tools" in capabilities,
                json_schema=rules.json_schema and "json_schema" in capabilities,
            )
            if "reasoning" not in capabilities and rules.reasoning == "optional":
                rules = replace(rules, reasoning="refused")
        if max_images is not None:
            rules = replace(rules, max_images=min(rules.max_images, max_images))
        if max_output_tokens is not None:
            cap = min(rules.max_output_tokens or max_output_tokens, max_output_tokens)
            rules = replace(rules, max_output_tokens=cap)
        if reasoning is not None and reasoning != "optional" and rules.reasoning == "optional":
            rules = replace(rules, reasoning=reasoning)
        return rules


# What Anthropic's Messages API has no counterpart for
NOT_CLAUDE = frozenset({"frequency_penalty", "presence_penalty", "seed", "logprobs", "top_logprobs"})
NOT_GEMINI = frozenset({"logprobs", "top_logprobs"})  # returned by few of its models; not relayed
# First match wins: put specific names before their families.
INTRINSIC_RULES: list[tuple[str, ModelRules]] = [
    ("deepseek-reasoner", ModelRules(max_images=0, reasoning="required", max_output_tokens=65_536)),
    ("deepseek-*", ModelRules(max_images=0, reasoning="refused", max_output_tokens=8_192)),
    ("o1*", ModelRules(reasoning="required", fixed_temperature=1.0, max_output_tokens=100_000)),
    ("o3*", ModelRules(reasoning="required", fixed_temperature=1.0, max_output_tokens=100_000)),
    ("o4*", ModelRules(reasoning="required", fixed_temperature=1.0, max_output_tokens=100_000)),
    ("gpt-5*", ModelRules(fixed_temperature=1.0, max_output_tokens=128_000)),
    (
        "gpt-4-vision-preview",
        ModelRules(
            requires_max_tokens=True,
            max_output_tokens=4_096,
            reasoning="refused",
            tools=False,
            json_schema=False,
        ),
    ),
    ("gpt-4o-audio*", ModelRules(max_images=0, audio=True, reasoning="refused", max_output_tokens=16_384)),
    ("gpt-4o*", ModelRules(reasoning="refused", max_output_tokens=16_384)),
    ("gpt-4.1*", ModelRules(reasoning="refused", max_output_tokens=32_768)),
    ("gpt-3.5*", ModelRules(max_images=0, reasoning="refused", max_output_tokens=4_096)),
    (
        "claude-*haiku*",
        ModelRules(temperature_max=1.0, max_output_tokens=8_192, parameters_refused=NOT_CLAUDE),
    ),
    (
        "claude-*opus*",
        ModelRules(temperature_max=1.0, max_output_tokens=32_000, parameters_refused=NOT_CLAUDE),
    ),
    ("claude-*", ModelRules(temperature_max=1.0, max_output_tokens=64_000, parameters_refused=NOT_CLAUDE)),
    ("gemini-*", ModelRules(video=True, audio=True, max_output_tokens=65_536, parameters_refused=NOT_GEMINI)),
    ("*thinking*", ModelRules(reasoning="required")),
]
# A model of no known family is constrained only by its catalog entry, which the operator sets.
DEFAULT_RULES = ModelRules(video=True, audio=True)
DEFAULT_CAPABILITIES = ["text", "vision", "tools", "json_schema", "reasoning"]


def rules_for(model_name: str) -> ModelRules:
    name = model_name.lower()
    return next(
        (rules for pattern, rules in INTRINSIC_RULES if fnmatch.fnmatchcase(name, pattern)), DEFAULT_RULES
    )


def default_capabilities(model_name: str) -> list[str]:
    """What a new catalog entry says the model takes: its family's capabilities, or text, images, tools,
    structured output and reasoning."""
    rules = rules_for(model_name)
    return DEFAULT_CAPABILITIES if rules is DEFAULT_RULES else rules.capabilities


def violation(model: str, rule: str, message: str, param: str) -> InvalidParam:
    return InvalidParam(f"{model}: {message} (rule: {rule})", code="model_rule_violation", param=param)


MEDIA_FIELDS = {"image_url": "image_urls", "video_url": "video_urls", "audio_url": "audio_url"}


def rules_check(model: str, rules: ModelRules, request: dict[str, Any], *, protocol: str) -> dict[str, Any]:
    """Refuse a request that breaks a rule; return the parameters the rules settle (reasoning on or off).

    A media violation names the field the caller sent: `image_urls`, or for the custom protocol the
    path of the first part the model cannot take (`messages[2].content[1]`)."""
    parts = _media_parts(request["messages"])

    def media_param(kind: str, allowed: int) -> str:
        if protocol != "custom":
            return MEDIA_FIELDS[kind]
        return [path for part_kind, path in parts if part_kind == kind][allowed]

    images = sum(kind == "image_url" for kind, _ in parts)
    if images > rules.max_images:
        limit = (
            "does not take images" if rules.max_images == 0 else f"takes at most {rules.max_images} images"
        )
        param = media_param("image_url", rules.max_images)
        raise violation(model, "max_images", f"{limit}; this request has {images}", param)
    if any(kind == "video_url" for kind, _ in parts) and not rules.video:
        raise violation(model, "video", "does not take video", media_param("video_url", 0))
    if any(kind == "audio_url" for kind, _ in parts) and not rules.audio:
        raise violation(model, "audio", "does not take audio", media_param("audio_url", 0))

    max_tokens = request.get("max_tokens")
    if max_tokens is None and rules.requires_max_tokens:
        raise violation(model, "requires_max_tokens", "needs max_tokens to be set", "max_tokens")
    if (
        max_tokens is not None
        and rules.max_output_tokens is not None
        and max_tokens > rules.max_output_tokens
    ):
        raise violation(
            model,
            "max_output_tokens",
            f"max_tokens {max_tokens} exceeds the output cap of {rules.max_output_tokens}",
            "max_tokens",
        )

    temperature = request.get("temperature")
    if temperature is not None:
        if rules.fixed_temperature is not None and temperature != rules.fixed_temperature:
            raise violation(
                model,
                "fixed_temperature",
                f"only runs at temperature {rules.fixed_temperature:g}",
                "temperature",
            )
        if temperature > rules.temperature_max:
            raise violation(
                model, "temperature_max", f"takes temperature up to {rules.temperature_max:g}", "temperature"
            )

    parameters = request["parameters"]
    refused = sorted(set(parameters) & rules.parameters_refused)
    if refused:
        raise violation(model, refused[0], f"does not take {refused[0]}", refused[0])
    if "tools" in parameters and not rules.tools:
        raise violation(model, "tools", "does not take tools", "tools")
    if (parameters.get("response_format") or {}).get("type", "text") != "text" and not rules.json_schema:
        raise violation(model, "json_schema", "does not take structured output", "response_format")

    reasoning = request.get("reasoning")
    if rules.reasoning == "required":
        if reasoning is False:
            raise violation(
                model, "reasoning_required", "always reasons; reasoning cannot be false", "reasoning"
            )
        reasoning = True
    elif rules.reasoning == "refused" and reasoning is True:
        raise violation(model, "reasoning_refused", "does not support reasoning", "reasoning")
    return {"reasoning": reasoning}


def _media_parts(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(type, path) of every media part, in order."""
    return [
        (part["type"], f"messages[{m}].content[{p}]")
        for m, message in enumerate(messages)
        if isinstance(message["content"], list)
        for p, part in enumerate(message["content"])
        if part["type"] in MEDIA_FIELDS
    ]
