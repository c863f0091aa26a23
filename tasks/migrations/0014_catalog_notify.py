"""Every change to what admission reads of the catalog NOTIFYs `foxgate_catalog`, in the changing
transaction: web processes keep that catalog in memory (tasks/catalog.py) and drop it when they hear this.

A trigger rather than a notify in each service: the admin, the commands, the cluster's breaker, a test's
TRUNCATE and an operator's psql all write these tables, and none of them can forget it. Channels change
often in ways admission does not read (probe results, failure reasons), so their trigger fires only for
the columns it reads; the breaker's settle-time UPDATE that finds the breaker closed changes no row and
sends nothing."""

from django.db import migrations

WHOLE_TABLES = ("tasks_price", "tasks_model", "tasks_channel_served_models", "tenants_modelruleoverride")

NOTIFY = """
CREATE FUNCTION foxgate_catalog_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Delivered at commit, once per transaction however many rows or statements changed.
    PERFORM pg_notify('foxgate_catalog', '');
    RETURN NULL;
END $$;
CREATE TRIGGER foxgate_catalog_notify AFTER INSERT OR DELETE ON tasks_channel
    FOR EACH ROW EXECUTE FUNCTION foxgate_catalog_notify();
CREATE TRIGGER foxgate_catalog_notify_update AFTER UPDATE OF enabled, circuit_state ON tasks_channel
    FOR EACH ROW WHEN (OLD.enabled IS DISTINCT FROM NEW.enabled OR OLD.circuit_state IS DISTINCT FROM
        NEW.circuit_state)
    EXECUTE FUNCTION foxgate_catalog_notify();
CREATE TRIGGER foxgate_catalog_notify_truncate AFTER TRUNCATE ON tasks_channel
    FOR EACH STATEMENT EXECUTE FUNCTION foxgate_catalog_notify();
""" + "".join(
    f"""CREATE TRIGGER foxgate_catalog_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION foxgate_catalog_notify();
"""
    for table in WHOLE_TABLES
)

UNDO = (
    "".join(f"DROP TRIGGER foxgate_catalog_notify ON {table};\n" for table in (*WHOLE_TABLES, "tasks_channel"))
    + """
DROP TRIGGER foxgate_catalog_notify_update ON tasks_channel;
DROP TRIGGER foxgate_catalog_notify_truncate ON tasks_channel;
DROP FUNCTION foxgate_catalog_notify();
"""
)


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0013_queue_notify"),
        ("tenants", "0006_ledger_by_tenant_kind"),
    ]

    operations = [migrations.RunSQL(NOTIFY, UNDO)]
