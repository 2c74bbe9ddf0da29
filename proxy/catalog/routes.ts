/**
 * Routes in the control catalog: where a tenant database lives and how the proxy logs into it.
 * Shared by the proxy (reads), the coordinator and the migration engine (write).
 */
import type { ClientBase } from "pg";

export interface TenantDbKey {
  tenant: string;
  database: string;
}

export interface Route extends TenantDbKey {
  engine: "postgres" | "mysql" | "redis" | "mongodb";
  role: string;
  scramVerifier: string;
  server: string;
  host: string;
  port: number;
  backendDatabase: string;
  epoch: number;
  status: string;
  /** `session` (a server connection per client) or `transaction` (lent per transaction). */
  poolMode: PoolMode;
  /** Transaction mode: server connections per proxy for this tenant database. */
  poolSize: number;
  /** Connections each proxy may open to the server, over all its tenant databases; undefined: no limit. */
  serverBudget: number | undefined;
}

export const POOL_MODES = ["session", "transaction"] as const;
export type PoolMode = (typeof POOL_MODES)[number];
/** What a route without pool settings gets (a catalog written before they existed). */
export const DEFAULT_POOL = { mode: "session" as PoolMode, size: 20 };

/** Where a route points; what a switch changes. */
export type RouteTarget = Pick<Route, "server" | "host" | "port" | "backendDatabase">;

/** The database name clients connect with: `<database>__<tenant>`, e.g. `app__acme`. */
export function clientDatabaseName(k: TenantDbKey): string {
  return `${k.database}__${k.tenant}`;
}

/** Identifiers are lower-case, no "__" inside (the stack config enforces it), so the split is unambiguous. */
export function parseClientDatabaseName(name: string): TenantDbKey | undefined {
  const m = /^([a-z][a-z0-9_]*?)__([a-z][a-z0-9_]*)$/.exec(name);
  if (!m || m[1]!.includes("__") || m[2]!.includes("__")) return undefined;
  return { database: m[1]!, tenant: m[2]! };
}

export const keyString = (k: TenantDbKey) => clientDatabaseName(k);

const COLUMNS = `tenant, database, engine, role, scram_verifier, server, host, port, backend_database, epoch, status, pool_mode, pool_size, server_budget`;

/** A row of tenantfleet.tenant_databases (as a query or a route's notification gives it) as a Route. */
export function rowToRoute(r: Record<string, unknown>): Route {
  return {
    tenant: r.tenant as string,
    database: r.database as string,
    engine: r.engine as Route["engine"],
    role: r.role as string,
    scramVerifier: r.scram_verifier as string,
    server: r.server as string,
    host: r.host as string,
    port: Number(r.port),
    backendDatabase: r.backend_database as string,
    epoch: Number(r.epoch),
    status: r.status as string,
    poolMode: (r.pool_mode as PoolMode | undefined) ?? DEFAULT_POOL.mode,
    poolSize: r.pool_size == null ? DEFAULT_POOL.size : Number(r.pool_size),
    serverBudget: r.server_budget == null ? undefined : Number(r.server_budget),
  };
}

export async function loadRoutes(c: ClientBase): Promise<Route[]> {
  return (await c.query(`select ${COLUMNS} from tenantfleet.tenant_databases`)).rows.map(rowToRoute);
}

export async function loadRoute(c: ClientBase, k: TenantDbKey): Promise<Route | undefined> {
  const r = await c.query(`select ${COLUMNS} from tenantfleet.tenant_databases where tenant = $1 and database = $2`, [k.tenant, k.database]);
  return r.rows[0] ? rowToRoute(r.rows[0]) : undefined;
}

/** Create or update a tenant database's route (not a cutover: the epoch is kept). */
export async function upsertRoute(
  c: ClientBase,
  r: Omit<Route, "epoch" | "status" | "poolMode" | "poolSize" | "serverBudget"> & Partial<Pick<Route, "poolMode" | "poolSize" | "serverBudget">> & { status?: string },
): Promise<Route> {
  const res = await c.query(
    `insert into tenantfleet.tenant_databases (tenant, database, engine, role, scram_verifier, server, host, port, backend_database, status, pool_mode, pool_size, server_budget)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce($10, 'ready'), coalesce($11, 'session'), coalesce($12, 20), $13)
     on conflict (tenant, database) do update set engine = excluded.engine, role = excluded.role,
       scram_verifier = excluded.scram_verifier, server = excluded.server, host = excluded.host, port = excluded.port,
       backend_database = excluded.backend_database, status = coalesce($10, tenant_databases.status),
       pool_mode = coalesce($11, tenant_databases.pool_mode), pool_size = coalesce($12, tenant_databases.pool_size),
       server_budget = case when $14 then $13 else tenant_databases.server_budget end, updated_at = now()
     returning ${COLUMNS}`,
    [
      r.tenant, r.database, r.engine, r.role, r.scramVerifier, r.server, r.host, r.port, r.backendDatabase, r.status ?? null,
      r.poolMode ?? null, r.poolSize ?? null, r.serverBudget ?? null, "serverBudget" in r,
    ],
  );
  return rowToRoute(res.rows[0]);
}

/** Change a route's pool settings only (never where it points: that is commitRoute's). */
export async function setRoutePool(c: ClientBase, k: TenantDbKey, p: Pick<Route, "poolMode" | "poolSize" | "serverBudget">): Promise<void> {
  await c.query(
    `update tenantfleet.tenant_databases set pool_mode = $3, pool_size = $4, server_budget = $5, updated_at = now()
     where tenant = $1 and database = $2 and (pool_mode, pool_size, server_budget) is distinct from ($3, $4, $5)`,
    [k.tenant, k.database, p.poolMode, p.poolSize, p.serverBudget ?? null],
  );
}

export async function deleteRoute(c: ClientBase, k: TenantDbKey): Promise<void> {
  await c.query(`delete from tenantfleet.tenant_databases where tenant = $1 and database = $2`, [k.tenant, k.database]);
}

export class EpochConflictError extends Error {
  override name = "EpochConflictError";
}

/**
 * The commit point of a cutover: point the route at `target` as epoch `epoch`, only if the
 * committed epoch is `epoch - 1`. Re-committing the same target at the same epoch is a no-op
 * (a retried call); anything else is a conflict.
 */
export async function commitRoute(c: ClientBase, k: TenantDbKey, target: RouteTarget, epoch: number): Promise<Route> {
  const res = await c.query(
    `update tenantfleet.tenant_databases set server = $3, host = $4, port = $5, backend_database = $6, epoch = $7, updated_at = now()
     where tenant = $1 and database = $2 and epoch = $7 - 1
     returning ${COLUMNS}`,
    [k.tenant, k.database, target.server, target.host, target.port, target.backendDatabase, epoch],
  );
  if (res.rows[0]) return rowToRoute(res.rows[0]);
  const now = await loadRoute(c, k);
  if (!now) throw new EpochConflictError(`no route for ${clientDatabaseName(k)} in the catalog`);
  if (now.epoch === epoch && now.host === target.host && now.port === target.port && now.backendDatabase === target.backendDatabase) return now;
  throw new EpochConflictError(`route ${clientDatabaseName(k)} is at epoch ${now.epoch}; cannot commit epoch ${epoch}`);
}
