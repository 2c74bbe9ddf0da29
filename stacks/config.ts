/**
 * The stack config schema and its pure validator. Runs at preview, before any resource exists,
 * and reports every problem at once, each naming the tenant, the database and the field.
 *
 * ```yaml
 * config:
 *   tenantfleet:platform: local          # local (default), aws or gcp (stacks/cloud-config.ts)
 *   tenantfleet:regions: [eu-west, us-east]
 *   tenantfleet:tenants:
 *     acme:
 *       databases:
 *         app:   { engine: postgres, isolation: dedicated, region: eu-west }
 *         cache: { engine: redis,    isolation: shared,    region: eu-west }
 *         api:   { engine: postgres, isolation: shared, region: eu-west, pool: { mode: transaction, size: 5 } }
 * ```
 */
import { ENGINES, isEngine, type Engine } from "../dynamic-providers/engines";
import { validateCloudConfig, type CloudSpec } from "./cloud-config";
import { platformConnectionBudget } from "../dynamic-providers/engines/connection-budget";
import { serverNameOf, sharedClusterName } from "../components/fleet-plan";
import { DEFAULT_REDIS_MEMORY_MB } from "../dynamic-providers/engines/redis/settings";
import { POOL_MODES, type PoolMode } from "../proxy/catalog/routes";
import { validateSchemas, type SchemaSpec } from "./schemas";

export const ISOLATIONS = ["shared", "dedicated"] as const;
export type Isolation = (typeof ISOLATIONS)[number];
export const PLATFORMS = ["local", "aws", "gcp"] as const;
export type Platform = (typeof PLATFORMS)[number];

/** One tenant database's placement, as the user wrote it (validated). */
export interface TenantDatabaseSpec {
  tenant: string;
  database: string;
  engine: Engine;
  isolation: Isolation;
  region: string;
  /** PostgreSQL and MariaDB/MySQL: how the proxies lend server connections (absent: `session`, as before pools existed). */
  pool?: PoolSpec;
  /** Redis: the instance's memory (its `maxmemory`), MB. Default DEFAULT_REDIS_MEMORY_MB. */
  memoryMb?: number;
}

export { DEFAULT_REDIS_MEMORY_MB };
/** Memory of a shared Redis host for its tenant databases' instances when `redisHostMemoryMb` is not given, MB. */
export const DEFAULT_REDIS_HOST_MEMORY_MB = 4096;

export interface PoolSpec {
  mode: PoolMode;
  /** `transaction` mode: server connections per proxy for this tenant database. */
  size: number;
}

/** Pool size when `pool.size` is not given. */
export const DEFAULT_POOL_SIZE = 5;
export const MAX_POOL_SIZE = 1000;

export interface FleetSpec {
  platform: Platform;
  regions: string[];
  databases: TenantDatabaseSpec[];
  /** Proxy hosts in the fleet. Default 2. */
  proxyReplicas: number;
  /** Hours a migrated tenant database's fenced source copy and safety backup are kept. Default 24. */
  rollbackWindowHours: number;
  /** Tenant databases are protected resources (removing or renaming one fails the preview) unless false. Default true. */
  protectTenantDatabases: boolean;
  /** `tenantfleet:aws` / `tenantfleet:gcp` (stacks/cloud-config.ts); only on those platforms. */
  cloud?: CloudSpec;
  /** Memory a shared Redis host gives its tenant databases' instances, MB (their `memory` must fit). */
  redisHostMemoryMb: number;
  /** Schema migrations per database name (`tenantfleet:schemas`, stacks/schemas.ts); empty when none. */
  schemas?: SchemaSpec[];
}

export interface ConfigProblem {
  /** Dotted path into the `tenantfleet:` config, e.g. `tenants.acme.databases.app.region`. */
  path: string;
  message: string;
}

export type ValidationResult = { ok: true; spec: FleetSpec } | { ok: false; problems: ConfigProblem[] };

/**
 * Tenant and database names become part of server names, database names on the servers and the
 * proxy database name `<database>__<tenant>`: lowercase letter first, then lowercase letters,
 * digits or single underscores, at most 30 characters, and never `__` (the proxy's separator).
 */
export const IDENTIFIER = /^[a-z][a-z0-9_]{0,29}$/;
/** Region names: lowercase letters, digits and single hyphens, e.g. `eu-west` or `us-east-1`. */
export const REGION = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;

const DATABASE_FIELDS = ["engine", "isolation", "region"] as const;
const OPTIONAL_DATABASE_FIELDS = ["pool", "memory"] as const;

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function identifierProblem(kind: string, name: string): string | undefined {
  if (!IDENTIFIER.test(name)) {
    return `${kind} name "${name}" is not a safe identifier: use a lowercase letter first, then lowercase letters, digits or "_" (at most 30 characters)`;
  }
  if (name.includes("__") || name.endsWith("_")) {
    return `${kind} name "${name}" must not contain "__" or end with "_": the proxy joins <database>__<tenant> with "__"`;
  }
  return undefined;
}

function oneOf(values: readonly string[]): string {
  return values.map((v) => `"${v}"`).join(", ");
}

/** The raw values of the `tenantfleet:` namespace (whatever YAML produced). */
export interface RawFleetConfig {
  platform?: unknown;
  regions?: unknown;
  tenants?: unknown;
  proxyReplicas?: unknown;
  rollbackWindowHours?: unknown;
  protectTenantDatabases?: unknown;
  redisHostMemoryMb?: unknown;
  schemas?: unknown;
  aws?: unknown;
  gcp?: unknown;
}

export function validateFleetConfig(raw: RawFleetConfig): ValidationResult {
  const problems: ConfigProblem[] = [];
  const problem = (path: string, message: string) => problems.push({ path, message });

  let platform: Platform = "local";
  if (raw.platform !== undefined) {
    if (typeof raw.platform === "string" && (PLATFORMS as readonly string[]).includes(raw.platform)) {
      platform = raw.platform as Platform;
    } else {
      problem("platform", `platform must be one of ${oneOf(PLATFORMS)}, got ${JSON.stringify(raw.platform)}`);
    }
  }

  const regions: string[] = [];
  if (raw.regions === undefined) {
    problem("regions", "regions is missing: list the regions tenant databases may live in, e.g. [eu-west, us-east]");
  } else if (!Array.isArray(raw.regions) || raw.regions.length === 0) {
    problem("regions", "regions must be a non-empty list of region names");
  } else {
    raw.regions.forEach((r, i) => {
      if (typeof r !== "string" || !REGION.test(r)) {
        problem(`regions[${i}]`, `region ${JSON.stringify(r)} is not a region name (lowercase letters, digits and "-")`);
      } else if (regions.includes(r)) {
        problem(`regions[${i}]`, `region "${r}" is listed twice`);
      } else {
        regions.push(r);
      }
    });
  }

  const databases: TenantDatabaseSpec[] = [];
  if (raw.tenants === undefined) {
    problem("tenants", "tenants is missing: declare at least one tenant with its databases");
  } else if (!isRecord(raw.tenants)) {
    problem("tenants", "tenants must be a map of tenant name → { databases: { … } }");
  } else {
    const seenTenants = new Map<string, string>();
    for (const [tenant, tenantValue] of Object.entries(raw.tenants)) {
      const tpath = `tenants.${tenant}`;
      const bad = identifierProblem("tenant", tenant);
      if (bad) problem(tpath, bad);
      const folded = tenant.toLowerCase();
      const twin = seenTenants.get(folded);
      if (twin !== undefined) problem(tpath, `tenant "${tenant}" duplicates tenant "${twin}"`);
      seenTenants.set(folded, tenant);

      if (!isRecord(tenantValue) || tenantValue.databases === undefined) {
        problem(`${tpath}.databases`, `tenant "${tenant}": databases is missing`);
        continue;
      }
      for (const key of Object.keys(tenantValue)) {
        if (key !== "databases") problem(`${tpath}.${key}`, `tenant "${tenant}": unknown field "${key}" (expected "databases")`);
      }
      if (!isRecord(tenantValue.databases) || Object.keys(tenantValue.databases).length === 0) {
        problem(`${tpath}.databases`, `tenant "${tenant}": databases must be a non-empty map of database name → { engine, isolation, region }`);
        continue;
      }
      const seenDbs = new Map<string, string>();
      for (const [database, dbValue] of Object.entries(tenantValue.databases)) {
        const dpath = `${tpath}.databases.${database}`;
        const who = `tenant "${tenant}", database "${database}"`;
        const badDb = identifierProblem("database", database);
        if (badDb) problem(dpath, `${who}: ${badDb}`);
        const dfold = database.toLowerCase();
        const dtwin = seenDbs.get(dfold);
        if (dtwin !== undefined) problem(dpath, `${who}: duplicates database "${dtwin}"`);
        seenDbs.set(dfold, database);

        if (!isRecord(dbValue)) {
          problem(dpath, `${who}: must be a map { engine, isolation, region }`);
          continue;
        }
        for (const key of Object.keys(dbValue)) {
          if (!(DATABASE_FIELDS as readonly string[]).includes(key) && !(OPTIONAL_DATABASE_FIELDS as readonly string[]).includes(key)) {
            problem(`${dpath}.${key}`, `${who}: unknown field "${key}" (expected ${oneOf([...DATABASE_FIELDS, ...OPTIONAL_DATABASE_FIELDS])})`);
          }
        }
        for (const field of DATABASE_FIELDS) {
          if (dbValue[field] === undefined) problem(`${dpath}.${field}`, `${who}: ${field} is missing`);
        }
        const { engine, isolation, region } = dbValue;
        if (engine !== undefined && !isEngine(engine)) {
          problem(`${dpath}.engine`, `${who}: engine must be one of ${oneOf(ENGINES)}, got ${JSON.stringify(engine)}`);
        }
        if (isolation !== undefined && !(ISOLATIONS as readonly unknown[]).includes(isolation)) {
          problem(`${dpath}.isolation`, `${who}: isolation must be one of ${oneOf(ISOLATIONS)}, got ${JSON.stringify(isolation)}`);
        }
        if (region !== undefined && (typeof region !== "string" || !regions.includes(region))) {
          problem(
            `${dpath}.region`,
            `${who}: region ${JSON.stringify(region)} is not one of the stack's regions (${oneOf(regions)})`,
          );
        }
        const pool = dbValue.pool === undefined ? undefined : poolSpec(dbValue.pool, engine, `${dpath}.pool`, who, problem);
        const memoryMb = engine === "redis" ? redisMemory(dbValue.memory, `${dpath}.memory`, who, problem) : undefined;
        if (dbValue.memory !== undefined && engine !== "redis") problem(`${dpath}.memory`, `${who}: memory applies to redis tenant databases (each is an instance of its own with that maxmemory)`);
        if (isEngine(engine) && (ISOLATIONS as readonly unknown[]).includes(isolation) && typeof region === "string" && regions.includes(region)) {
          databases.push({ tenant, database, engine, isolation: isolation as Isolation, region, ...(pool ? { pool } : {}), ...(memoryMb !== undefined ? { memoryMb } : {}) });
        }
      }
    }
  }

  const proxyReplicas = raw.proxyReplicas ?? 2;
  if (typeof proxyReplicas !== "number" || !Number.isInteger(proxyReplicas) || proxyReplicas < 1 || proxyReplicas > 16) {
    problem("proxyReplicas", `proxyReplicas must be a whole number from 1 to 16, got ${JSON.stringify(raw.proxyReplicas)}`);
  }
  const rollbackWindowHours = raw.rollbackWindowHours ?? 24;
  if (typeof rollbackWindowHours !== "number" || !(rollbackWindowHours >= 0 && rollbackWindowHours <= 8760)) {
    problem("rollbackWindowHours", `rollbackWindowHours must be a number of hours from 0 to 8760, got ${JSON.stringify(raw.rollbackWindowHours)}`);
  }
  const protect = raw.protectTenantDatabases ?? true;
  if (typeof protect !== "boolean") problem("protectTenantDatabases", `protectTenantDatabases must be true or false, got ${JSON.stringify(raw.protectTenantDatabases)}`);

  if (typeof proxyReplicas === "number") {
    for (const p of oversubscribedServers(platform, databases, proxyReplicas)) problem(p.path, p.message);
  }
  const redisHostMemoryMb = raw.redisHostMemoryMb ?? DEFAULT_REDIS_HOST_MEMORY_MB;
  if (typeof redisHostMemoryMb !== "number" || !Number.isInteger(redisHostMemoryMb) || redisHostMemoryMb < 16) {
    problem("redisHostMemoryMb", `redisHostMemoryMb must be a whole number of MB, at least 16, got ${JSON.stringify(raw.redisHostMemoryMb)}`);
  } else {
    for (const p of oversubscribedRedisHosts(databases, redisHostMemoryMb)) problem(p.path, p.message);
  }

  const schemas = validateSchemas(raw.schemas, databases, problem);

  let cloud: CloudSpec | undefined;
  if (platform === "aws" || platform === "gcp") {
    if (regions.length > 0) cloud = validateCloudConfig(platform, raw[platform], regions, (p) => problems.push(p));
  }
  for (const other of ["aws", "gcp"] as const) {
    if (other !== platform && raw[other] !== undefined) problem(other, `tenantfleet:${other} is set but the platform is "${platform}"`);
  }

  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    spec: {
      platform,
      regions,
      databases,
      proxyReplicas: proxyReplicas as number,
      rollbackWindowHours: rollbackWindowHours as number,
      protectTenantDatabases: protect as boolean,
      redisHostMemoryMb: redisHostMemoryMb as number,
      ...(schemas.length ? { schemas } : {}),
      ...(cloud ? { cloud } : {}),
    },
  };
}

function poolSpec(raw: unknown, engine: unknown, path: string, who: string, problem: (path: string, message: string) => void): PoolSpec | undefined {
  if (!isRecord(raw)) {
    problem(path, `${who}: pool must be a map { mode, size }, e.g. { mode: transaction, size: ${DEFAULT_POOL_SIZE} }`);
    return undefined;
  }
  let ok = true;
  for (const key of Object.keys(raw)) {
    if (key !== "mode" && key !== "size") {
      problem(`${path}.${key}`, `${who}: unknown pool field "${key}" (expected "mode", "size")`);
      ok = false;
    }
  }
  if (engine !== "postgres" && engine !== "mysql") {
    problem(path, `${who}: pool applies to postgres and mysql tenant databases (the ${String(engine)} proxy does not pool yet)`);
    return undefined;
  }
  const mode = raw.mode ?? "session";
  if (!(POOL_MODES as readonly unknown[]).includes(mode)) {
    problem(`${path}.mode`, `${who}: pool.mode must be one of ${oneOf(POOL_MODES)}, got ${JSON.stringify(raw.mode)}`);
    ok = false;
  }
  const size = raw.size ?? DEFAULT_POOL_SIZE;
  if (typeof size !== "number" || !Number.isInteger(size) || size < 1 || size > MAX_POOL_SIZE) {
    problem(`${path}.size`, `${who}: pool.size must be a whole number from 1 to ${MAX_POOL_SIZE} (server connections per proxy), got ${JSON.stringify(raw.size)}`);
    ok = false;
  }
  return ok ? { mode: mode as PoolMode, size: size as number } : undefined;
}

/** `memory` of a Redis tenant database: MB as a number, or a string with `mb`/`gb` (`512mb`, `2gb`). */
function redisMemory(raw: unknown, path: string, who: string, problem: (path: string, message: string) => void): number | undefined {
  if (raw === undefined) return undefined;
  const m = typeof raw === "number" ? [String(raw), String(raw), "mb"] : typeof raw === "string" ? /^(\d+)\s*(mb|gb)$/i.exec(raw.trim()) : null;
  const mb = m ? Number(m[1]) * (m[2]!.toLowerCase() === "gb" ? 1024 : 1) : NaN;
  if (!Number.isInteger(mb) || mb < 1) {
    problem(path, `${who}: memory must be a size such as 256mb or 2gb (a number is MB), got ${JSON.stringify(raw)}`);
    return undefined;
  }
  return mb;
}

/**
 * Shared Redis hosts whose instances' memory, added up, is more than the host gives them: each
 * instance may fill its `maxmemory`, and they share the host's memory.
 */
export function oversubscribedRedisHosts(databases: TenantDatabaseSpec[], hostMemoryMb: number): ConfigProblem[] {
  const byHost = new Map<string, TenantDatabaseSpec[]>();
  for (const d of databases) {
    if (d.engine !== "redis" || d.isolation !== "shared") continue;
    const host = sharedClusterName("redis", d.region);
    byHost.set(host, [...(byHost.get(host) ?? []), d]);
  }
  const out: ConfigProblem[] = [];
  for (const [host, dbs] of byHost) {
    const need = dbs.reduce((n, d) => n + (d.memoryMb ?? DEFAULT_REDIS_MEMORY_MB), 0);
    if (need <= hostMemoryMb) continue;
    const list = dbs.map((d) => `${d.tenant}/${d.database} ${d.memoryMb ?? DEFAULT_REDIS_MEMORY_MB} MB`).join(", ");
    out.push({ path: "tenants", message: `shared Redis host ${host} is oversubscribed: its tenant databases' instances need ${need} MB (${list}) and the host gives them ${hostMemoryMb} MB (redisHostMemoryMb). Lower their memory, move some to dedicated servers, or raise redisHostMemoryMb.` });
  }
  return out;
}

/** The server a tenant database is placed on. */
const serverOf = serverNameOf;

/**
 * Servers whose transaction pools, all full at once on every proxy, would need more connections
 * than the server's budget (max_connections less the reserve). Session-mode databases keep a
 * server connection per client session, as before pools, and are not counted.
 */
export function oversubscribedServers(platform: Platform, databases: TenantDatabaseSpec[], proxies: number): ConfigProblem[] {
  const byServer = new Map<string, TenantDatabaseSpec[]>();
  for (const d of databases) {
    if ((d.engine !== "postgres" && d.engine !== "mysql") || d.pool?.mode !== "transaction") continue;
    const s = serverOf(d);
    byServer.set(s, [...(byServer.get(s) ?? []), d]);
  }
  const out: ConfigProblem[] = [];
  for (const [server, dbs] of byServer) {
    const { maxConnections: max, server: budget } = platformConnectionBudget(dbs[0]!.engine === "mysql" ? "mysql" : "postgres", platform, dbs[0]!.isolation, proxies);
    const need = dbs.reduce((n, d) => n + d.pool!.size * proxies, 0);
    if (need <= budget) continue;
    const list = dbs.map((d) => `${d.tenant}/${d.database} (${d.pool!.size})`).join(", ");
    out.push({
      path: `tenants.${dbs[0]!.tenant}.databases.${dbs[0]!.database}.pool.size`,
      message:
        `server ${server} is oversubscribed: the transaction pools of ${list} need ${need} connections with ${proxies} prox${proxies === 1 ? "y" : "ies"}, ` +
        `more than its budget of ${budget} (max_connections ${max} less ${max - budget} kept for admin, replication and migrations). Lower the pool sizes, or move a database to a dedicated server.`,
    });
  }
  return out;
}

/** One readable block for the CLI: every problem on its own line, prefixed with its config path. */
export function formatProblems(problems: ConfigProblem[]): string {
  const lines = problems.map((p) => `  tenantfleet:${p.path}: ${p.message}`);
  return `invalid tenantfleet stack config (${problems.length} problem${problems.length === 1 ? "" : "s"}):\n${lines.join("\n")}`;
}
