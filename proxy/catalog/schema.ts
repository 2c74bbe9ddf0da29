/**
 * The control catalog's schema and its migrations. The catalog is a small PostgreSQL database of
 * its own (never a tenant's): the source of truth for routes and the commit point of a cutover.
 *
 * Migrations are append-only: never edit one that has shipped, add the next. `migrateCatalog`
 * applies the missing ones in order under an advisory lock, so proxies and the migration engine
 * starting together do not race.
 */
import type { ClientBase } from "pg";

export const CATALOG_SCHEMA = "tenantfleet";

/** Channels the catalog's triggers notify on. */
export const CHANNELS = {
  /** A tenant database's route changed (payload: JSON {tenant, database, epoch}). */
  routes: "tenantfleet_routes",
  /** A pause was requested, renewed or lifted (payload: JSON {tenant, database, pauseId}). */
  control: "tenantfleet_control",
  /** A proxy acknowledged a control step (payload: JSON {proxyId, tenant, database, pauseId, phase}). */
  acks: "tenantfleet_acks",
} as const;

/** How long the logins a proxy opens for an announced switch are kept if no pause uses them (an
 * announcement's `ttlMs`, and its value when a notification leaves it out). */
export const ANNOUNCEMENT_TTL_MS = 120_000;

interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: "routes, proxies, pauses and acknowledgements",
    sql: `
create table tenantfleet.tenant_databases (
  tenant           text not null,
  database         text not null,
  engine           text not null check (engine in ('postgres', 'mysql', 'redis', 'mongodb')),
  -- The role clients log in as; the backend role has the same name and the same verifier.
  role             text not null,
  -- SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>: no plaintext password is kept anywhere.
  scram_verifier   text not null,
  server           text not null,
  host             text not null,
  port             integer not null check (port between 1 and 65535),
  backend_database text not null,
  -- Bumped by every committed cutover; a switch names the epoch it commits.
  epoch            bigint not null default 1,
  status           text not null default 'ready',
  updated_at       timestamptz not null default now(),
  primary key (tenant, database)
);

create table tenantfleet.proxies (
  proxy_id     text primary key,
  -- Encoded into the BackendKeyData the proxy hands out, so any proxy can route a cancel.
  ordinal      integer not null unique check (ordinal between 1 and 2047),
  host         text not null,
  port         integer not null,
  admin_url    text,
  started_at   timestamptz not null default now(),
  heartbeat_at timestamptz not null default now()
);

create table tenantfleet.pauses (
  tenant       text not null,
  database     text not null,
  pause_id     bigint generated always as identity,
  lease_until  timestamptz not null,
  requested_by text not null,
  requested_at timestamptz not null default now(),
  primary key (tenant, database),
  foreign key (tenant, database) references tenantfleet.tenant_databases on delete cascade
);

create table tenantfleet.proxy_acks (
  proxy_id  text not null references tenantfleet.proxies on delete cascade,
  tenant    text not null,
  database  text not null,
  pause_id  bigint not null,
  -- draining | drained | drain_timeout | switched | resumed
  phase     text not null,
  detail    jsonb not null default '{}',
  at        timestamptz not null default now(),
  primary key (proxy_id, tenant, database)
);

create function tenantfleet.notify_route() returns trigger language plpgsql as $$
begin
  perform pg_notify('${CHANNELS.routes}', json_build_object(
    'tenant', coalesce(new.tenant, old.tenant), 'database', coalesce(new.database, old.database),
    'epoch', new.epoch)::text);
  return null;
end $$;
create trigger route_changed after insert or update or delete on tenantfleet.tenant_databases
  for each row execute function tenantfleet.notify_route();

create function tenantfleet.notify_control() returns trigger language plpgsql as $$
begin
  perform pg_notify('${CHANNELS.control}', json_build_object(
    'tenant', coalesce(new.tenant, old.tenant), 'database', coalesce(new.database, old.database),
    'pauseId', coalesce(new.pause_id, old.pause_id), 'op', tg_op)::text);
  return null;
end $$;
create trigger pause_changed after insert or update or delete on tenantfleet.pauses
  for each row execute function tenantfleet.notify_control();

create function tenantfleet.notify_ack() returns trigger language plpgsql as $$
begin
  perform pg_notify('${CHANNELS.acks}', json_build_object(
    'proxyId', new.proxy_id, 'tenant', new.tenant, 'database', new.database,
    'pauseId', new.pause_id, 'phase', new.phase)::text);
  return null;
end $$;
create trigger ack_changed after insert or update on tenantfleet.proxy_acks
  for each row execute function tenantfleet.notify_ack();
`,
  },
  {
    version: 2,
    name: "pauses name the switch target, so proxies open connections there while draining",
    sql: `alter table tenantfleet.pauses add column target jsonb;`,
  },
  {
    version: 3,
    name: "migration records: phase, progress, timings, verification, backup, error",
    sql: `
create table tenantfleet.migrations (
  migration_id bigint generated always as identity primary key,
  tenant       text not null,
  database     text not null,
  from_server  text not null,
  to_server    text not null,
  -- logical_replication | dump_restore
  method       text not null,
  -- preflight | prepare | sync | catchup | cutover | fence | done | failed (the backup runs alongside)
  phase        text not null,
  -- Initial sync, 0..100 (logical replication only).
  sync_percent real,
  -- Last measured replication lag of this tenant database (marker round trip), ms.
  lag_ms       integer,
  started_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  finished_at  timestamptz,
  -- Timings per phase, pause, verification, backup location: the record Pulumi shows too.
  record       jsonb not null default '{}',
  error        text
);
-- No foreign key: the history outlives a deleted tenant database.
create index migrations_by_tenant_database on tenantfleet.migrations (tenant, database, migration_id desc);
`,
  },
  {
    version: 4,
    name: "pool mode and size per tenant database, the server's connection budget per proxy",
    sql: `
-- session: a server connection per client session (every feature); transaction: lent per
-- transaction from a pool of pool_size per proxy (DESIGN.md, "Connections and pooling").
alter table tenantfleet.tenant_databases
  add column pool_mode text not null default 'session' check (pool_mode in ('session', 'transaction')),
  add column pool_size integer not null default 20 check (pool_size > 0),
  -- Connections each proxy may open to the route's server over all its tenant databases (its
  -- share of max_connections less the reserve); null: no limit known.
  add column server_budget integer check (server_budget > 0);
`,
  },
  {
    version: 5,
    name: "each proxy's MySQL port, so a KILL of a session on another proxy reaches it",
    sql: `alter table tenantfleet.proxies add column mysql_port integer;`,
  },
  {
    version: 6,
    name: "notifications carry what their readers need: a pause's lease and target, an acknowledgement's detail",
    // A pause's round trips are a cutover's client-visible time: a proxy takes a pause from its
    // notification instead of reading the row back, and the coordinator an acknowledgement.
    // Readers of version 5 ignore the new fields (and read back, as before).
    sql: `
create or replace function tenantfleet.notify_control() returns trigger language plpgsql as $$
begin
  perform pg_notify('${CHANNELS.control}', json_build_object(
    'tenant', coalesce(new.tenant, old.tenant), 'database', coalesce(new.database, old.database),
    'pauseId', coalesce(new.pause_id, old.pause_id), 'op', tg_op,
    'remainingMs', case when tg_op = 'DELETE' then null else greatest(0, extract(epoch from new.lease_until - now()) * 1000)::int end,
    'target', case when tg_op = 'DELETE' then null else new.target end)::text);
  return null;
end $$;
create or replace function tenantfleet.notify_ack() returns trigger language plpgsql as $$
begin
  perform pg_notify('${CHANNELS.acks}', json_build_object(
    'proxyId', new.proxy_id, 'tenant', new.tenant, 'database', new.database,
    'pauseId', new.pause_id, 'phase', new.phase, 'detail', new.detail)::text);
  return null;
end $$;
`,
  },
  {
    version: 7,
    name: "a route's notification carries the route",
    // The switch's commit reaches every proxy by this notification; reading the route back was one
    // more catalog round trip inside the pause. Readers of version 6 ignore the field.
    sql: `
create or replace function tenantfleet.notify_route() returns trigger language plpgsql as $$
begin
  perform pg_notify('${CHANNELS.routes}', json_build_object(
    'tenant', coalesce(new.tenant, old.tenant), 'database', coalesce(new.database, old.database),
    'epoch', new.epoch,
    'route', case when tg_op = 'DELETE' then null else to_jsonb(new) end)::text);
  return null;
end $$;
`,
  },
  {
    version: 8,
    name: "schema rollouts: the migration files of each database name, each tenant database's schema version",
    // Written by the SchemaSet and SchemaRollout resources (dynamic-providers/schema-rollout/);
    // proxies never read them. The tenant database's own history table is the truth; tenant_schemas
    // is what `npm run status` shows without connecting to every tenant database.
    sql: `
create table tenantfleet.schema_sets (
  database   text primary key,
  engine     text not null check (engine in ('postgres', 'mysql')),
  -- [{name, checksum, sql}] in the order they apply.
  files      jsonb not null,
  -- {name, checksum, sql}: applied once, when a tenant database is created.
  seed       jsonb,
  updated_at timestamptz not null default now()
);
create table tenantfleet.tenant_schemas (
  tenant     text not null,
  database   text not null,
  -- The last file applied (null: none yet).
  head       text,
  -- The last rollout's error on this tenant database (null: it reached the head it was given).
  error      text,
  updated_at timestamptz not null default now(),
  primary key (tenant, database)
);
`,
  },
];

export const CATALOG_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** Apply missing migrations; returns the versions applied. Safe to call from many processes at once. */
export async function migrateCatalog(client: ClientBase): Promise<number[]> {
  const applied: number[] = [];
  await client.query("begin");
  try {
    await client.query("select pg_advisory_xact_lock(hashtext('tenantfleet.catalog.migrate'))");
    await client.query(`create schema if not exists ${CATALOG_SCHEMA}`);
    await client.query(`create table if not exists ${CATALOG_SCHEMA}.schema_migrations (
      version integer primary key, name text not null, applied_at timestamptz not null default now())`);
    const done = new Set(
      (await client.query<{ version: number }>(`select version from ${CATALOG_SCHEMA}.schema_migrations`)).rows.map((r) => r.version),
    );
    const newest = Math.max(0, ...done);
    if (newest > CATALOG_VERSION) {
      throw new Error(`the control catalog is at schema version ${newest}, newer than this program knows (${CATALOG_VERSION}): upgrade tenantfleet`);
    }
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      await client.query(m.sql);
      await client.query(`insert into ${CATALOG_SCHEMA}.schema_migrations (version, name) values ($1, $2)`, [m.version, m.name]);
      applied.push(m.version);
    }
    await client.query("commit");
  } catch (e) {
    await client.query("rollback").catch(() => undefined);
    throw e;
  }
  return applied;
}
