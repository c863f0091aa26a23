from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser

from foxgate.cli import cli_actor
from tasks.models import Channel, Model
from tasks.services import channel_add


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(value)
    return int(value)


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Add an upstream channel serving the given models (created in the catalog if new)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--provider", required=True, choices=Channel.Provider.values)
        parser.add_argument(
            "--base-url",
            required=True,
            help="as the provider's SDK takes it: https://api.openai.com/v1, https://api.anthropic.com, "
            "https://generativelanguage.googleapis.com",
        )
        parser.add_argument(
            "--api-key", help="the upstream's key (leave the flag out for an upstream that takes none)"
        )
        parser.add_argument(
            "--models",
            required=True,
            help="comma-separated public model names; public=upstream when the upstream names it otherwise",
        )
        parser.add_argument("--priority", type=int, default=0, help="higher first; lower ones are fallbacks")
        parser.add_argument("--weight", type=positive_int, default=1, help="share among equal priorities")
        parser.add_argument(
            "--timeout", type=positive_float, help="seconds per call (default: the global one)"
        )
        parser.add_argument("--max-concurrency", type=positive_int, help="calls in flight at once")

    def handle(self, *args, name: str, base_url: str, models: str, **options) -> None:
        # Not Django's URLValidator: it refuses single-label hosts such as `http://vllm:8000/v1`.
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CommandError(f"--base-url must be an http(s) URL, not {base_url!r}")
        mapping = {}
        for entry in (m.strip() for m in models.split(",")):
            if entry:
                public, _, upstream = entry.partition("=")
                if not public.strip() or (_ and not upstream.strip()):
                    raise CommandError(f"--models: {entry!r} is not NAME or NAME=UPSTREAM_NAME")
                mapping[public.strip()] = upstream.strip() or public.strip()
        if not mapping:
            raise CommandError("--models must name at least one model")
        api_key = options["api_key"]
        if api_key is not None and not api_key.strip():
            # `--api-key "$UNSET_VAR"` arrives as an empty string: a channel that would fail every call.
            raise CommandError(
                "--api-key was given but is empty (an unset variable?); pass the key, or leave the flag "
                "out for an upstream that takes no key"
            )
        if Channel.objects.filter(name=name).exists():
            raise CommandError(f"channel {name!r} already exists")
        channel = channel_add(
            name=name,
            provider=options["provider"],
            base_url=base_url,
            api_key=(api_key or "").strip(),
            model_names=list(mapping),
            model_mapping={public: upstream for public, upstream in mapping.items() if public != upstream},
            priority=options["priority"],
            weight=options["weight"],
            timeout_seconds=options["timeout"],
            max_concurrency=options["max_concurrency"],
            actor=cli_actor(),
        )
        self.stdout.write(f"added channel {channel.name} serving {', '.join(mapping)}")
        for model in Model.objects.filter(name__in=mapping).order_by("name"):
            if model.current_price() is None:  # a group's own price serves only that group
                self.stderr.write(
                    f"warning: model {model.name} has no price, so it cannot be served (422) until one is "
                    f"set: setprice {model.name} --input CREDITS --output CREDITS"
                )
