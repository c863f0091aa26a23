import json
import secrets
import signal
import time
from decimal import Decimal

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from foxgate.stack import Stack, StackError
from tasks.models import Channel, Model
from tasks.services import channel_add, price_set
from tenants.models import Tenant
from tenants.services import apikey_issue, tenant_create

DEMO_MODEL = "demo-model"
DEMO_TENANT = "demo"
DEMO_CHANNEL = "demo-fake-openai"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = (
        "Run FoxGate locally: migrate, create a demo tenant, key and channel on the bundled fake provider, "
        "then serve the web app, the worker cluster and the fake provider until Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="web server port")
        parser.add_argument("--fake-port", type=int, default=8900, help="fake provider port")

    def handle(self, *args, port: int, fake_port: int, **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        secret = self._demo_data(fake_port)
        admin_password = self._demo_admin()
        key_file = self._keep_key(secret)
        self.stdout.write(f"Demo API key (also in {key_file}):\n{secret}\nstarting the processes...\n")
        self.stdout.flush()
        stack = Stack(web_port=port, fake_port=fake_port)
        # Ctrl-C or SIGTERM stops everything, even when we were started with SIGINT ignored.
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            stack.start()
        except StackError as error:
            raise CommandError(
                f"could not start FoxGate: {error} (are ports {port} and {fake_port} free?)"
            ) from None
        base = stack.web_url
        body = json.dumps({"model": DEMO_MODEL, "prompt": "Say hello"})
        self.stdout.write(
            f"\nFoxGate is up at {base}. Admin site: {base}/admin/ (user admin, password {admin_password}).\n"
            f"API docs: {base}/v1/docs. Demo API key:\n{secret}\n\n"
            "Submit a generation:\n"
            f"curl -s {base}/v1/llm/generations -H 'Authorization: Bearer {secret}' "
            f"-H 'Content-Type: application/json' -d '{body}'\n"
            "then poll it with the id it returned:\n"
            f"curl -s {base}/v1/tasks/TASK_ID -H 'Authorization: Bearer {secret}'\n\n"
            f"The key is also in {key_file}. Press Ctrl-C to stop everything.\n"
        )
        self.stdout.flush()
        try:
            while not stack.exited():
                time.sleep(0.5)
            raise CommandError(f"{', '.join(stack.exited())} stopped unexpectedly")
        except KeyboardInterrupt:
            self.stdout.write("stopping...")
        finally:
            stack.stop()

    def _keep_key(self, secret: str) -> str:
        """Write the key to the data folder, readable by its owner only, so it outlives the scrollback."""
        key_file = settings.DATA_DIR / "demo-key"
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.touch(mode=0o600)
        key_file.write_text(secret + "\n")
        return str(key_file)

    def _demo_admin(self) -> str:
        """A platform staff account for the admin site, with a fresh password each run."""
        from django.contrib.auth.models import User

        password = secrets.token_urlsafe(12)
        user = User.objects.filter(username="admin").first() or User(username="admin")
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return password

    def _demo_data(self, fake_port: int) -> str:
        tenant = Tenant.objects.filter(slug=DEMO_TENANT).first() or tenant_create(
            slug=DEMO_TENANT, name="Demo tenant", credits=Decimal(1000)
        )
        if not Model.objects.filter(name=DEMO_MODEL, prices__isnull=False).exists():
            price_set(model_name=DEMO_MODEL, input_per_million=Decimal(1), output_per_million=Decimal(2))
        base_url = f"http://127.0.0.1:{fake_port}/v1"
        channel = Channel.objects.filter(name=DEMO_CHANNEL).first()
        if channel is None:
            channel_add(
                name=DEMO_CHANNEL, provider="openai", base_url=base_url, api_key="", model_names=[DEMO_MODEL]
            )
        elif channel.base_url != base_url:
            Channel.objects.filter(pk=channel.pk).update(base_url=base_url)
        return apikey_issue(tenant=tenant, name="demo").secret
