"""Shared by the channel commands (a leading underscore: Django does not take it for a command)."""

from django.core.management.base import CommandError

from tasks.models import Channel


def find_channel(name: str) -> Channel:
    channel = Channel.objects.filter(name=name).first()
    if channel is None:
        raise CommandError(f"no channel {name!r} (listchannels shows them)")
    return channel
