"""Which channel serves a model."""

from tasks.models import Channel, Model


def channels_serving(model: Model) -> list[Channel]:
    return list(model.channels.filter(enabled=True).order_by("id"))


def channel_pick(model: Model, *, exclude: set[int] = frozenset()) -> Channel | None:
    return next((channel for channel in channels_serving(model) if channel.id not in exclude), None)
