"""django-q2's ORM broker, made to ride out a database outage.

Its pusher process treats any error from `dequeue` as a crashed broker: it logs, sleeps 10 s and exits
for the sentinel to start a new one, so a cluster stalled for ~10 s after every PostgreSQL restart.
Here a poll that fails for want of the database drops the dead connection and says "nothing yet"; the
next poll, one short pause later, connects afresh."""

import contextlib
import logging
import time

from django.db import connections
from django_q.brokers.orm import ORM
from django_q.conf import Conf

from foxgate.errors import DATABASE_OUTAGE

logger = logging.getLogger(__name__)

# Between polls while the database is away: short, so work resumes soon after it returns, and not a
# busy loop of failed connection attempts.
OUTAGE_POLL_SECONDS = 0.2


class OutageTolerantORM(ORM):
    database_away = False  # logged once when the database goes, once when it is back

    def dequeue(self) -> list[tuple[int, str]] | None:
        try:
            found = super().dequeue()
        except DATABASE_OUTAGE as error:
            if not self.database_away:
                logger.warning(
                    "the queue's database is unavailable (%s); polling on", str(error).strip()[:200]
                )
            self.database_away = True
            with contextlib.suppress(*DATABASE_OUTAGE):
                connections[Conf.ORM].close()
            time.sleep(OUTAGE_POLL_SECONDS)
            return None
        if self.database_away:
            logger.warning("the queue's database is back")
            self.database_away = False
        return found
