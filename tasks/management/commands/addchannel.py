from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError, CommandParser

from foxgate.cli import cli_actor
from tasks.models import Channel
from tasks.services import channel_add


class Command(BaseCommand):
    help = "Add an upstream channel serving the given models (created in the catalog if new)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--provider", required=True, choices=Channel.Provider.values)
        parser.add_argument("--base-url", required=True, help="as the provider's SDK takes it, e.g. .../v1")
        parser.add_argument("--api-key", default="")
        parser.add_argument("--models", required=True, help="comma-separated model names")

    def handle(
        self, *args, name: str, provider: str, base_url: str, api_key: str, models: str, **options
    ) -> None:
        # Not Django's URLValidator: it refuses single-label hosts such as `http://vllm:8000/v1`.
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CommandError(f"--base-url must be an http(s) URL, not {base_url!r}")
        model_names = [m.strip() for m in models.split(",") if m.strip()]
        if not model_names:
            raise CommandError("--models must name at least one model")
        if Channel.objects.filter(name=name).exists():
            raise CommandError(f"channel {name!r} already exists")
        channel = channel_add(
            name=name,
            provider=provider,
            base_url=base_url,
            api_key=api_key,
            model_names=model_names,
            actor=cli_actor(),
        )
        self.stdout.write(f"added channel {channel.name} serving {', '.join(model_names)}")
