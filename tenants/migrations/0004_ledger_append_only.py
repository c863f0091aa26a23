from django.db import migrations

# The ledger is append-only: corrections are new lines (kind "adjustment"), never edits. The database
# itself refuses UPDATE and DELETE, so no code path, admin action or stray script can rewrite history.
FORBID = """
CREATE FUNCTION tenants_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on tenants_ledgerentry is not allowed', TG_OP;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER tenants_ledger_append_only
    BEFORE UPDATE OR DELETE ON tenants_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION tenants_ledger_append_only();
"""

ALLOW = """
DROP TRIGGER tenants_ledger_append_only ON tenants_ledgerentry;
DROP FUNCTION tenants_ledger_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("tenants", "0003_limits_budgets_memberships_audit")]

    operations = [migrations.RunSQL(FORBID, ALLOW)]
