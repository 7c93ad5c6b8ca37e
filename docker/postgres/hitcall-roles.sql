-- HitCall's database roles (run by a superuser, in the HitCall database; idempotent):
--
--   hitcall_owner    owns the schema and every object in it; migrations run as it
--                    (HITCALL_MIGRATE_DATABASE_URL).
--   hitcall_service  what the service connects as (DATABASE_URL): no superuser, owns no
--                    table. `hitcall migrate` / `hitcall serve` grant it, as the owner,
--                    read and write on the rows of every table but the append-only audit
--                    log (SELECT and INSERT only).
--
-- psql variables: owner_password, service_password. At a new install the image runs this
-- once (init-roles.sh); to upgrade an install that ran as one superuser role:
--   docker compose exec -T postgres psql -v ON_ERROR_STOP=1 -U <superuser> -d hitcall \
--       -v owner_password=... -v service_password=... < docker/postgres/hitcall-roles.sql
\set ON_ERROR_STOP on
SELECT set_config('hitcall.owner_password', :'owner_password', false),
       set_config('hitcall.service_password', :'service_password', false);

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['hitcall_owner', 'hitcall_service'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', r);
        END IF;
        EXECUTE format(
            'ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L', r,
            current_setting(CASE r WHEN 'hitcall_owner' THEN 'hitcall.owner_password' ELSE 'hitcall.service_password' END));
    END LOOP;
END
$$;

-- The owner owns the database, the schema and (an older install's) objects in it; nobody
-- else creates objects there.
DO $$
DECLARE
    obj record;
BEGIN
    EXECUTE format('ALTER DATABASE %I OWNER TO hitcall_owner', current_database());
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO hitcall_service', current_database());
    ALTER SCHEMA public OWNER TO hitcall_owner;
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    FOR obj IN
        SELECT c.relname, CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                                         WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END AS kind
        FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
          AND c.relowner <> 'hitcall_owner'::regrole
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                                      AND d.deptype IN ('a', 'i'))
        ORDER BY c.relkind <> 'S', c.relname
    LOOP
        EXECUTE format('ALTER %s public.%I OWNER TO hitcall_owner', obj.kind, obj.relname);
    END LOOP;
    FOR obj IN
        SELECT p.oid::regprocedure::text AS signature FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND p.proowner <> 'hitcall_owner'::regrole
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO hitcall_owner', obj.signature);
    END LOOP;
END
$$;
