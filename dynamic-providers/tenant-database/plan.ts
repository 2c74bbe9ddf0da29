/**
 * Pure planning for TenantDatabase: input checks (with the refusals that protect data), the plan
 * text `preview --diff` shows, and what an update must do. Unit-tested without servers.
 */
import { isUnknown } from "../preview";
import type { Route } from "../../proxy/catalog/routes";
import type { MigrationRecord } from "../migration/orchestrator";
import { LIVE_ENGINES, type RetainedCopy, type TenantDatabaseInputs, type TenantDatabaseOutputs } from "./types";

export const DEFAULT_ROLLBACK_WINDOW_HOURS = 24;
const NAME = /^[a-z][a-z0-9_]{0,29}$/;

export type CheckOutcome = { inputs: TenantDatabaseInputs } | { failures: Array<{ property: string; reason: string }> };

/** Validate and normalise; refuse changes that cannot be a migration. `olds` are the previous inputs. */
export function checkTenantDatabase(olds: Partial<TenantDatabaseInputs> | undefined, news: Record<string, unknown>): CheckOutcome {
  const failures: Array<{ property: string; reason: string }> = [];
  const fail = (property: string, reason: string) => failures.push({ property, reason });
  const who = `tenant database ${String(news.tenant)}/${String(news.database)}`;
  for (const k of ["tenant", "database"] as const) {
    if (typeof news[k] !== "string" || !NAME.test(news[k] as string)) fail(k, `${who}: ${k} must be a lower-case identifier, got ${JSON.stringify(news[k])}`);
  }
  if (!(LIVE_ENGINES as readonly unknown[]).includes(news.engine)) fail("engine", `${who}: engine ${JSON.stringify(news.engine)} has no live migration yet; TenantDatabase manages ${listed(LIVE_ENGINES.map((e) => JSON.stringify(e)))} databases`);
  if (news.isolation !== "shared" && news.isolation !== "dedicated") fail("isolation", `${who}: isolation must be "shared" or "dedicated", got ${JSON.stringify(news.isolation)}`);
  if (typeof news.region !== "string" || news.region === "") fail("region", `${who}: region is required`);
  if (typeof news.serverName !== "string" || news.serverName === "") fail("serverName", `${who}: serverName is required`);
  const server = news.server as Record<string, unknown> | undefined;
  if (!isUnknown(server) && (!server || (!isUnknown(server.host) && typeof server.host !== "string") || (!isUnknown(server.port) && typeof server.port !== "number"))) {
    fail("server", `${who}: server must be { host, port, adminUser }`);
  }
  const pool = news.pool as Record<string, unknown> | undefined;
  if (pool !== undefined && !isUnknown(pool)) {
    const whole = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v > 0;
    if (typeof pool !== "object" || pool === null || (pool.mode !== "session" && pool.mode !== "transaction") || !whole(pool.size) || !whole(pool.serverBudget)) {
      fail("pool", `${who}: pool must be { mode: "session" | "transaction", size, serverBudget } (whole numbers above 0), got ${JSON.stringify(pool)}`);
    }
  }
  for (const k of ["serverAdminPassword", "catalogPassword"] as const) {
    if (!isUnknown(news[k]) && (typeof news[k] !== "string" || news[k] === "")) fail(k, `${who}: ${k} is required (the provider logs in with it)`);
  }
  const window = news.rollbackWindowHours ?? DEFAULT_ROLLBACK_WINDOW_HOURS;
  if (typeof window !== "number" || !(window >= 0 && window <= 24 * 365)) fail("rollbackWindowHours", `${who}: rollbackWindowHours must be a number of hours from 0 to 8760, got ${JSON.stringify(window)}`);

  if (olds?.tenant !== undefined) {
    // Identity and engine are fixed for the resource's life: none of these can be a migration.
    if (olds.tenant !== news.tenant || olds.database !== news.database) {
      fail(
        olds.tenant !== news.tenant ? "tenant" : "database",
        `tenant database ${olds.tenant}/${olds.database} cannot be renamed to ${String(news.tenant)}/${String(news.database)}: a rename would create an empty database and drop this one with its data. ` +
          `Keep the name, or create the new database, copy the data, then remove the old one.`,
      );
    }
    if (olds.engine !== undefined && olds.engine !== news.engine) {
      fail("engine", `tenant database ${olds.tenant}/${olds.database} cannot change engine from ${olds.engine} to ${String(news.engine)}: that needs a data conversion tenantfleet does not do. Create a new database with the new engine instead.`);
    }
  }
  if (failures.length) return { failures };
  const inputs = { ...(news as unknown as TenantDatabaseInputs), rollbackWindowHours: window as number };
  inputs.plan = describePlan(olds, inputs);
  return { inputs };
}

/**
 * What `pulumi up` will do with this tenant database, in one line. Without a move the words do
 * not change from run to run (the plan is a checked input, and the engine rewrites the stack's
 * whole checkpoint for every unchanged resource whose inputs differ from the stored ones): a new
 * database says where it is, and a database that stays keeps the plan it has, except the plan of
 * the move that brought it there.
 */
export function describePlan(olds: Partial<TenantDatabaseInputs> | undefined, news: TenantDatabaseInputs): string {
  const here = `${news.serverName} (${news.isolation}, ${news.region})`;
  if (!olds?.serverName) return `on ${here}`;
  if (olds.serverName === news.serverName) return typeof olds.plan === "string" && olds.plan !== "" && !olds.plan.startsWith("migrate ") ? olds.plan : `on ${here}`;
  return `migrate ${olds.serverName} (${olds.isolation}, ${olds.region}) → ${here}: PostgreSQL logical replication, lag to zero, drain-and-switch in every proxy (backup-and-restore under a pause if replication is impossible)`;
}

export interface UpdatePlan {
  changes: boolean;
  /** The server changed: a live migration. */
  migrate: boolean;
  /** Retained copies past their window: dropped by the update. */
  expired: RetainedCopy[];
  reasons: string[];
}

export function planTenantDatabase(olds: TenantDatabaseOutputs, news: TenantDatabaseInputs, now: Date): UpdatePlan {
  const reasons: string[] = [];
  const migrate = olds.serverName !== news.serverName;
  if (migrate) reasons.push(news.plan);
  const was = olds.pool, now_ = news.pool;
  if (isUnknown(now_) || was?.mode !== now_?.mode || was?.size !== now_?.size || was?.serverBudget !== now_?.serverBudget) {
    reasons.push(`pool: ${describePool(was)} → ${describePool(now_)} (the proxies apply it to new transactions; nothing moves)`);
  }
  if (olds.status === "finishing") reasons.push(`an interrupted run moved it to ${olds.serverName}: the update finishes that move's cleanup and fence`);
  else if (olds.status !== "ready") reasons.push(`status is ${olds.status}: the update repairs it`);
  const catalogMoved = isUnknown(news.catalog) || olds.catalog.host !== news.catalog.host || olds.catalog.port !== news.catalog.port || olds.catalog.database !== news.catalog.database;
  if (catalogMoved) reasons.push("the control catalog moved: the route is written there");
  const expired = (olds.retained ?? []).filter((r) => new Date(r.expiresAt) <= now);
  if (expired.length) reasons.push(`${expired.length} retained cop${expired.length === 1 ? "y is" : "ies are"} past the rollback window: dropped`);
  return { changes: reasons.length > 0, migrate, expired, reasons };
}

function describePool(p: TenantDatabaseInputs["pool"]): string {
  if (!p || isUnknown(p)) return p ? "(known after the servers update)" : "session (default)";
  return p.mode === "session" ? "session" : `transaction, ${p.size} per proxy (server budget ${p.serverBudget} per proxy)`;
}

/** The route's pool columns for a TenantDatabase's inputs (no pool: session, as before pools). */
export function poolOfRoute(p: TenantDatabaseInputs["pool"]): { poolMode: "session" | "transaction"; poolSize: number; serverBudget: number | undefined } {
  return p ? { poolMode: p.mode, poolSize: p.size, serverBudget: p.serverBudget } : { poolMode: "session", poolSize: 20, serverBudget: undefined };
}

/**
 * Multi-host URI: clients that support it (libpq, psql, pgx, JDBC; MySQL Connector/J, MariaDB
 * Connector/J and mysqlsh for `mysql://`) try the proxies in turn.
 */
export function connectionString(role: string, password: string, endpoints: string[], clientDatabase: string, scheme: "postgresql" | "mysql" | "redis" = "postgresql"): string {
  // Redis URLs name one host (ioredis, redis-cli -u): the first proxy; the fleet output lists them all.
  if (scheme === "redis") return `redis://${encodeURIComponent(role)}:${encodeURIComponent(password)}@${endpoints[0] ?? ""}`;
  return `${scheme}://${encodeURIComponent(role)}:${encodeURIComponent(password)}@${endpoints.join(",")}/${encodeURIComponent(clientDatabase)}`;
}

export function expiry(from: Date, hours: number): string {
  return new Date(from.getTime() + hours * 3600_000).toISOString();
}

/**
 * `pulumi refresh`: the state brought in line with the catalog, the truth about placement. When the
 * route points elsewhere than the state says, an interrupted run committed a move: the state takes
 * the route's server, database and epoch (status `finishing`), and keeps the copy it left as a
 * retained copy whose cleanup and fence the next update finishes. `committed` is that move's record.
 */
export function refreshedOutputs(props: TenantDatabaseOutputs, route: Route, now: Date, committed?: MigrationRecord): TenantDatabaseOutputs {
  if (route.server === props.serverName) {
    return { ...props, backendDatabase: route.backendDatabase, epoch: route.epoch, status: route.status };
  }
  const left: RetainedCopy = {
    kind: "fenced_copy",
    server: { ...props.server, name: props.serverName },
    adminPassword: props.serverAdminPassword,
    backendDatabase: props.backendDatabase,
    role: props.role,
    expiresAt: expiry(now, props.rollbackWindowHours),
    finishMove: true,
  };
  const backup: RetainedCopy[] = committed?.backup ? [{ kind: "backup", location: committed.backup.location, expiresAt: expiry(now, props.rollbackWindowHours) }] : [];
  return {
    ...props,
    serverName: route.server,
    server: { ...props.server, host: route.host, port: route.port },
    backendDatabase: route.backendDatabase,
    epoch: route.epoch,
    status: "finishing",
    lastMigration: committed ?? props.lastMigration,
    retained: [...(props.retained ?? []), left, ...backup],
  };
}

/** `"a", "b" and "c"`. */
const listed = (xs: string[]) => (xs.length < 2 ? xs.join("") : `${xs.slice(0, -1).join(", ")} and ${xs[xs.length - 1]}`);
