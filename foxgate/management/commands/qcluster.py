"""django-q2's `qcluster`, with database connections that last as long as each cluster process.

Django's default (CONN_MAX_AGE 0, right for the web tier, where every request runs in a thread of its own)
closes a connection whenever django-q2 tidies up: its pusher before every claim, its monitor before every
acknowledgement and each worker before every job. In the cluster that meant three new PostgreSQL
connections per task (profiled with bench/cpu_per_request.py: connecting was 40 % of the pusher's time and
a third of the monitor's). A cluster process has a fixed set of threads, so each keeps its connection:
one per thread that queries, replaced after a database restart. The queue's own statements skip the
per-statement health check (foxgate/broker.py), and a generation's job runs none on its worker's thread,
so django-q2's check before each job finds nothing to check. django-q2 closes every connection before
it forks, so no process inherits another's socket. README ("Processes") counts them per process.
"""

import os

from django.db import connections
from django_q.management.commands.qcluster import Command as QCluster


class Command(QCluster):
    def handle(self, *args, **options) -> None:
        os.environ.setdefault("PGAPPNAME", "foxgate-cluster")  # tells its sessions apart in pg_stat_activity
        for alias in connections:
            # The dict every thread's connection of this alias reads its settings from.
            connections.settings[alias]["CONN_MAX_AGE"] = None
        super().handle(*args, **options)
