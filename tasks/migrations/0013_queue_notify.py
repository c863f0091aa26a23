"""The job queue wakes its clusters: NOTIFY on every insert into django-q2's queue table (foxgate/broker.py
waits for it instead of polling), and an index for its claim, which walks a key's rows in id order."""

from django.db import migrations

NOTIFY = """
CREATE FUNCTION foxgate_queue_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Delivered at commit, once per key per transaction however many rows it queued.
    PERFORM pg_notify('foxgate_queue', NEW.key);
    RETURN NULL;
END $$;
CREATE TRIGGER foxgate_queue_notify AFTER INSERT ON django_q_ormq
    FOR EACH ROW EXECUTE FUNCTION foxgate_queue_notify();
CREATE INDEX foxgate_ormq_key_id ON django_q_ormq (key, id);
"""

UNDO = """
DROP INDEX foxgate_ormq_key_id;
DROP TRIGGER foxgate_queue_notify ON django_q_ormq;
DROP FUNCTION foxgate_queue_notify();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0012_task_lease"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunSQL(NOTIFY, UNDO)]
