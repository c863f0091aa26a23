"""Run the test identity provider: `python -m tests.oidc_provider.serve PORT DB` with the environment
OIDC_PROVIDER_CLIENT (JSON: client_id, client_secret, redirect_uri) and OIDC_PROVIDER_USERS (JSON: a list of
username, password, email and groups). It makes its database, its RSA signing key, the users and the
client application, then serves until stopped."""

import json
import os
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def main() -> None:
    port, database = sys.argv[1], sys.argv[2]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    os.environ["OIDC_PROVIDER_RSA_KEY"] = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    os.environ["OIDC_PROVIDER_DB"] = database
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.oidc_provider.settings"
    import django
    from django.core.management import call_command

    django.setup()
    from django.contrib.auth.models import Group, User
    from oauth2_provider.models import Application

    call_command("migrate", verbosity=0)
    for account in json.loads(os.environ["OIDC_PROVIDER_USERS"]):
        user = User.objects.create_user(account["username"], account["email"], account["password"])
        user.groups.set(Group.objects.get_or_create(name=name)[0] for name in account["groups"])
    client = json.loads(os.environ["OIDC_PROVIDER_CLIENT"])
    Application.objects.create(
        name="FoxGate",
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=client["redirect_uri"],
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,
    )
    call_command("runserver", f"127.0.0.1:{port}", use_reloader=False, use_threading=True)


if __name__ == "__main__":
    main()
