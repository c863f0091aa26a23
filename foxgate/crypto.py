"""Encryption at rest for secrets FoxGate must be able to read back (upstream provider API keys).

Fernet (AES-128-CBC + HMAC-SHA256) from the `cryptography` package. FOXGATE_SECRET_KEYS lists keys,
newest first: new values are encrypted with the first, any listed key decrypts, and `manage.py
rotatesecrets` re-encrypts stored values with the first so an old key can then be retired.
"""

from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as error:
        raise ImproperlyConfigured(
            f"FOXGATE_SECRET_KEYS holds a key that is not a Fernet key: {error}"
        ) from None


def encrypt(plaintext: str) -> str:
    return _fernet(tuple(settings.SECRET_KEYS)).encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet(tuple(settings.SECRET_KEYS)).decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "a stored secret cannot be decrypted with any key in FOXGATE_SECRET_KEYS"
        ) from None


def reencrypt(token: str) -> str:
    """The same secret, encrypted with the newest key."""
    return _fernet(tuple(settings.SECRET_KEYS)).rotate(token.encode()).decode()


def encrypted(column: str) -> property:
    """A model property that reads and writes in plaintext the secret its `column` keeps encrypted (an
    empty secret stays empty)."""

    def read(row: Any) -> str:
        token = getattr(row, column)
        return decrypt(token) if token else ""

    def write(row: Any, plaintext: str) -> None:
        setattr(row, column, encrypt(plaintext) if plaintext else "")

    return property(read, write)
