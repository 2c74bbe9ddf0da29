/** Schema sets and tenant databases' schema versions in the control catalog (schema version 8). */
import type { ClientBase } from "pg";
import type { MigrationFile, SchemaEngine } from "./types";

export interface SchemaSet {
  database: string;
  engine: SchemaEngine;
  files: MigrationFile[];
  seed?: MigrationFile;
}

/** A catalog older than schema version 8 has no schema sets (nobody declared any). */
async function hasSchemaSets(c: ClientBase): Promise<boolean> {
  return !!(await c.query<{ t: string | null }>("select to_regclass('tenantfleet.schema_sets')::text as t")).rows[0]?.t;
}

export async function saveSchemaSet(c: ClientBase, s: SchemaSet): Promise<void> {
  await c.query(
    `insert into tenantfleet.schema_sets (database, engine, files, seed) values ($1, $2, $3, $4)
     on conflict (database) do update set engine = excluded.engine, files = excluded.files, seed = excluded.seed, updated_at = now()`,
    [s.database, s.engine, JSON.stringify(s.files), s.seed ? JSON.stringify(s.seed) : null],
  );
}

/** The set of `database` (undefined: none, or a catalog from before schema sets). */
export async function loadSchemaSet(c: ClientBase, database: string): Promise<SchemaSet | undefined> {
  if (!(await hasSchemaSets(c))) return undefined;
  const r = await c.query<{ engine: SchemaEngine; files: MigrationFile[]; seed: MigrationFile | null }>("select engine, files, seed from tenantfleet.schema_sets where database = $1", [database]);
  const row = r.rows[0];
  return row ? { database, engine: row.engine, files: row.files, ...(row.seed ? { seed: row.seed } : {}) } : undefined;
}

export async function deleteSchemaSet(c: ClientBase, database: string): Promise<void> {
  await c.query("delete from tenantfleet.schema_sets where database = $1", [database]);
}

export interface TenantSchema {
  tenant: string;
  database: string;
  head: string | null;
  error: string | null;
}

/** Record where tenant databases stand (after a rollout, or a creation at the head). */
export async function recordTenantSchemas(c: ClientBase, rows: TenantSchema[]): Promise<void> {
  if (!rows.length) return;
  await c.query(
    `insert into tenantfleet.tenant_schemas (tenant, database, head, error)
     select * from unnest($1::text[], $2::text[], $3::text[], $4::text[])
     on conflict (tenant, database) do update set
       head = case when excluded.error is null then excluded.head else coalesce(excluded.head, tenantfleet.tenant_schemas.head) end,
       error = excluded.error, updated_at = now()`,
    [rows.map((r) => r.tenant), rows.map((r) => r.database), rows.map((r) => r.head), rows.map((r) => r.error)],
  );
}

/** Every tenant database's recorded version, and the head of its database name's set. */
export async function loadTenantSchemas(c: ClientBase): Promise<(TenantSchema & { setHead: string | null })[]> {
  if (!(await hasSchemaSets(c))) return [];
  const r = await c.query<TenantSchema & { set_head: string | null }>(`
    select t.tenant, t.database, s.head, s.error, z.files -> -1 ->> 'name' as set_head
    from tenantfleet.tenant_databases t
    join tenantfleet.schema_sets z on z.database = t.database
    left join tenantfleet.tenant_schemas s on s.tenant = t.tenant and s.database = t.database`);
  return r.rows.map((x) => ({ tenant: x.tenant, database: x.database, head: x.head, error: x.error, setHead: x.set_head }));
}
