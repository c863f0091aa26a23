from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError, CommandParser

from foxgate.cli import cli_actor, parse_credits
from tasks.models import Model
from tasks.services import price_set


def optional_credits(value: str | None, flag: str) -> Decimal | None:
    return parse_credits(value, flag) if value else None


class Command(BaseCommand):
    help = "Set a model's price in credits per million tokens, creating the model if it is new."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model")
        parser.add_argument("--input", required=True, help="credits per million input tokens")
        parser.add_argument(
            "--output",
            help="credits per million output tokens (required for chat models; embeddings have none)",
        )
        parser.add_argument(
            "--kind",
            choices=Model.Kind.values,
            help="chat (generations, chat completions, messages) or embedding (POST /v1/embeddings); "
            "default: what the model is, chat for a new one",
        )
        parser.add_argument(
            "--cached-input", help="credits per million cached input tokens (default: --input)"
        )
        parser.add_argument(
            "--cache-write",
            help="credits per million input tokens written to a 5-minute prompt cache (default: --input)",
        )
        parser.add_argument(
            "--cache-write-1h",
            help="credits per million input tokens written to a 1-hour prompt cache (default: --input)",
        )
        parser.add_argument("--group", default="", help="the tenant group this price is for (default: all)")
        parser.add_argument(
            "--capabilities",
            help=f"comma-separated, of {','.join(Model.Capability.values)} "
            "(default: what the model's family takes)",
        )

    def handle(
        self,
        *args,
        model: str,
        input: str,
        output: str | None,
        capabilities: str | None,
        group: str,
        kind: str | None,
        **options,
    ) -> None:
        existing = Model.objects.filter(name=model).values_list("kind", flat=True).first()
        if output is None and (kind or existing or Model.Kind.CHAT) == Model.Kind.CHAT:
            raise CommandError("--output is required for a chat model")
        wanted = None
        if capabilities is not None:
            wanted = [c.strip() for c in capabilities.split(",") if c.strip()]
            unknown = sorted(set(wanted) - set(Model.Capability.values))
            if unknown or "text" not in wanted:
                raise CommandError(
                    f"--capabilities must include text and name only {', '.join(Model.Capability.values)}"
                )
        price = price_set(
            model_name=model,
            input_per_million=parse_credits(input, "--input"),
            output_per_million=parse_credits(output, "--output") if output is not None else Decimal(0),
            cached_input_per_million=optional_credits(options["cached_input"], "--cached-input"),
            cache_write_per_million=optional_credits(options["cache_write"], "--cache-write"),
            cache_write_1h_per_million=optional_credits(options["cache_write_1h"], "--cache-write-1h"),
            group=group,
            capabilities=wanted,
            kind=kind,
            actor=cli_actor(),
        )
        self.stdout.write(
            f"{model}: price version {price.version}" + (f" for group {group}" if group else "")
        )
