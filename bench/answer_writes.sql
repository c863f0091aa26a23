-- The rows one sync answer writes, as pgbench replays them: the task, its hold, claim, attempt, settlement
-- and ledger lines, in one transaction (the real statements are fewer and combined; the rows and the
-- indexes they touch are these). Measures what each index of these tables costs a write (issue 11).
--
--   FOXGATE_DATA_DIR=/tmp/w python manage.py migrate      # a database with FoxGate's schema
--   python -c "import pgserver; pgserver.get_server('/tmp/w/pgdata', cleanup_mode=None)"   # keep it up
--   export PGHOST=/tmp/w/pgdata PGUSER=postgres PGDATABASE=foxgate
--   psql -c "CREATE SEQUENCE bench_seq"
--   PGOPTIONS='-c session_replication_role=replica -c synchronous_commit=off' \
--     taskset -c 0 pgbench -n -f bench/answer_writes.sql -c 1 -T 10
--
-- session_replication_role=replica skips the foreign-key and trigger checks (no tenants or keys exist),
-- synchronous_commit=off the disk flush: what is left is the executor and the index writes.
\set tenant random(1, 10)
\set key random(1, 20)
\set chan random(1, 3)
SELECT nextval('bench_seq') AS n \gset
BEGIN;
INSERT INTO tasks_task (id, model, protocol, request, stream, sync, status, progress, error_code, error_message, user_group, credits_reserved, created_at, api_key_id, catalog_model_id, price_id, tenant_id, charge_basis, lease_owner) VALUES (('task_' || :n), 'gpt-4o-mini', 'custom', '{"messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 16}', false, true, 'pending', 0, '', '', 'default', 0.0100000000, now(), :key, 1, 1, :tenant, '', '');
INSERT INTO tenants_ledgerentry (kind, amount, held_change, memo, created_at, tenant_id, api_key_id, task_id, price_id) VALUES ('hold', 0, 0.01, '', now(), :tenant, :key, ('task_' || :n), 1);
UPDATE tasks_task SET status = 'processing', progress = 1, started_at = now(), lease_owner = 'host:1', lease_expires_at = now() + interval '15 seconds' WHERE id = ('task_' || :n) AND status = 'pending';
INSERT INTO tasks_taskattempt (number, started_at, error_code, error_message, channel_id, task_id) VALUES (1, now(), '', '', :chan, ('task_' || :n)) RETURNING id AS aid \gset
UPDATE tasks_taskattempt SET finished_at = now() WHERE id = :aid;
UPDATE tasks_task SET status = 'completed', progress = 100, finished_at = now(), channel_id = :chan, credits_charged = 0.0000100000, charge_basis = 'usage', lease_owner = '', lease_expires_at = NULL, result = '{"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}' WHERE id = ('task_' || :n);
INSERT INTO tenants_ledgerentry (kind, amount, held_change, memo, created_at, tenant_id, api_key_id, task_id, price_id) VALUES ('charge', -0.00001, 0, '', now(), :tenant, :key, ('task_' || :n), 1), ('release', 0, -0.01, '', now(), :tenant, :key, ('task_' || :n), 1);
COMMIT;
