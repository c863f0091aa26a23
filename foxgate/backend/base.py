"""Django's PostgreSQL backend, with a pooled connection checked at checkout without a round trip.

psycopg_pool's check (what Django installs with CONN_HEALTH_CHECKS) sends an empty query on every
checkout: one more round trip per request, and under ASGI a request checks out once per thread hop. A
server that restarts or ends a session (pg_terminate_backend) sends an error and closes the socket, so an
idle connection with anything to read is dead (or holds a message nobody asked for): testing the socket
with a zero-timeout poll tells them apart from live ones, which are handed out untouched.
"""

import select
from typing import Any

import psycopg
from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus

# How many dead connections one checkout may drop before giving up: after a restart the pool holds
# nothing but dead ones, and the pool replaces each as it is dropped.
DEAD_CONNECTIONS_AT_MOST = 1_000


def connection_alive(connection: psycopg.Connection) -> bool:
    """Whether an idle connection can still be used, told from its socket alone."""
    if connection.closed or connection.info.transaction_status != TransactionStatus.IDLE:
        return False
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)
    return not poller.poll(0)  # readable, hung up or in error: the server has let go of it


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> psycopg.Connection:
        connection = super().get_new_connection(conn_params)
        if self.pool is None:
            return connection
        for _ in range(DEAD_CONNECTIONS_AT_MOST):
            if connection_alive(connection):
                return connection
            connection.close()
            self.pool.putconn(connection)  # a closed connection is replaced, not handed out again
            connection = super().get_new_connection(conn_params)
        return connection
