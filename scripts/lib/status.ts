/**
 * `npm run status`: every tenant database's placement (from the stack's outputs) joined with what
 * the control catalog says right now (status, route epoch, the live or last migration).
 */
import type { ClientBase } from "pg";
import type { TenantSchema } from "../../dynamic-providers/schema-rollout/catalog";

/** A tenant database's recorded schema version and its set's head (loadTenantSchemas). */
export type SchemaRow = TenantSchema & { setHead: string | null };

export interface StatusRow {
  tenant: string;
  database: string;
  engine: string;
  isolation: string;
  region: string;
  server: string;
  /** ready | migrating_sync 42% | migrating | failed: <reason> | (no route) */
  status: string;
  epoch?: number;
  lastMigration?: string;
  /** Database names with schema migrations: the last file applied, the set's head, and whether it lags. */
  schema?: { version: string | null; head: string | null; behind: boolean; error?: string };
}

/** One word for a tenant database's schema: `0003_discount`, `0002_orders (behind 0003_discount)`, `… failed: …`. */
export function schemaCell(s: StatusRow["schema"]): string {
  if (!s) return "";
  const at = s.version ?? "(none)";
  if (!s.behind) return at;
  return `${at} (behind ${s.head})${s.error ? ` failed: ${s.error.split("\n")[0]}` : ""}`;
}

interface CatalogRow {
  tenant: string;
  database: string;
  server: string;
  epoch: string;
  status: string;
  migration_id: string | null;
  from_server: string | null;
  to_server: string | null;
  method: string | null;
  phase: string | null;
  sync_percent: number | null;
  lag_ms: number | null;
  error: string | null;
  record: { timings?: Record<string, number>; pauseMs?: number; verification?: { ok: boolean; mismatches: string[] }; keptCurrentBy?: string } | null;
  updated_at: Date | null;
}

export async function readCatalog(c: ClientBase): Promise<CatalogRow[]> {
  const r = await c.query<CatalogRow>(`
    select t.tenant, t.database, t.server, t.epoch, t.status,
           m.migration_id, m.from_server, m.to_server, m.method, m.phase, m.sync_percent, m.lag_ms, m.error, m.record, m.updated_at
    from tenantfleet.tenant_databases t
    left join lateral (select * from tenantfleet.migrations m where m.tenant = t.tenant and m.database = t.database
                       order by migration_id desc limit 1) m on true
    order by t.tenant, t.database`);
  return r.rows;
}

/** One status word for a catalog row, e.g. `migrating_sync 42%` or `failed: sync: …`. */
export function statusOf(row: Pick<CatalogRow, "status" | "sync_percent" | "error" | "phase">): string {
  if (row.status === "migrating_sync") return `migrating_sync ${Math.floor(row.sync_percent ?? 0)}%`;
  if (row.status === "failed") return `failed: ${row.error ?? "see the last migration"}`;
  return row.status;
}

export function describeMigration(row: CatalogRow): string | undefined {
  if (!row.migration_id) return undefined;
  const t = row.record?.timings ?? {};
  const how = { native: "replication", dump_restore: "dump/restore", standby: "switch to the copy kept current" }[row.method ?? ""] ?? row.method;
  const head = `#${row.migration_id} ${row.from_server} → ${row.to_server} (${how})`;
  if (row.phase === "done") {
    const v = row.record?.verification;
    const checked = v?.ok === false ? `; copies differed at the cutover: ${v.mismatches.join("; ")}` : "";
    const kept = row.record?.keptCurrentBy ? `; old copy on ${row.from_server} kept current (${row.record.keptCurrentBy})` : "";
    return `${head}: ${((t.total ?? 0) / 1000).toFixed(1)} s, queries held ${row.record?.pauseMs ?? "?"} ms${checked}${kept}`;
  }
  if (row.phase === "failed") return `${head}: failed`;
  return `${head}: ${row.phase}${row.lag_ms != null ? `, lag ${row.lag_ms} ms` : ""}`;
}

export interface PlacementOutput {
  engine: string;
  isolation: string;
  region: string;
  server: string;
}

export function statusRows(placement: Record<string, Record<string, PlacementOutput>>, catalog: CatalogRow[], only?: { tenant: string; database?: string }, schemas: SchemaRow[] = []): StatusRow[] {
  const byKey = new Map(catalog.map((r) => [`${r.tenant}/${r.database}`, r]));
  const schemaOf = new Map(schemas.map((r) => [`${r.tenant}/${r.database}`, r]));
  const rows: StatusRow[] = [];
  for (const [tenant, dbs] of Object.entries(placement)) {
    for (const [database, p] of Object.entries(dbs)) {
      if (only && (only.tenant !== tenant || (only.database && only.database !== database))) continue;
      const c = byKey.get(`${tenant}/${database}`);
      rows.push({
        tenant,
        database,
        engine: p.engine,
        isolation: p.isolation,
        region: p.region,
        server: c?.server ?? p.server,
        status: c ? statusOf(c) : p.engine === "postgres" ? "(no route)" : "ready (no proxy route for this engine yet)",
        epoch: c ? Number(c.epoch) : undefined,
        lastMigration: c ? describeMigration(c) : undefined,
        ...schemaField(schemaOf.get(`${tenant}/${database}`)),
      });
    }
  }
  return rows;
}

function schemaField(r: SchemaRow | undefined): Pick<StatusRow, "schema"> {
  if (!r) return {};
  return { schema: { version: r.head, head: r.setHead, behind: r.head !== r.setHead, ...(r.error ? { error: r.error } : {}) } };
}

export function renderTable(rows: StatusRow[]): string {
  const head = ["TENANT/DATABASE", "ENGINE", "ISOLATION", "REGION", "SERVER", "STATUS", "EPOCH", "SCHEMA", "LAST MIGRATION"];
  const body = rows.map((r) => [`${r.tenant}/${r.database}`, r.engine, r.isolation, r.region, r.server, r.status, r.epoch?.toString() ?? "", schemaCell(r.schema), r.lastMigration ?? ""]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  return [head, ...body].map((cols) => cols.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}
