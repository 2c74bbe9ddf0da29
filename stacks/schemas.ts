/**
 * `tenantfleet:schemas`: per database name, a folder of migration files rolled out to every tenant
 * database of that name (DESIGN.md, "Schema across tenants").
 *
 * ```yaml
 *   tenantfleet:schemas:
 *     app:
 *       migrations: migrations/app     # folder, relative to the project (where Pulumi.yaml is)
 *       seed: migrations/app-seed.sql  # optional: applied once, when a tenant database is created
 *       canary: [acme]                 # or a number: the first N tenants by name (default 1)
 *       perServer: 4                   # tenant databases migrated at once per server (default 4)
 *       parallel: 16                   # at once in all (default 16)
 *       maxFailures: 0                 # failures after the canary before the rollout stops (default 0)
 * ```
 * Files are `<number>_<name>.sql` (`0001_init.sql`), applied in the order of their numbers.
 * `validateSchemas` is pure (shape and cross-checks); `loadSchemaFiles` reads the folders.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import * as path from "node:path";
import { CONNECTION_RESERVE } from "../dynamic-providers/engines/connection-budget";
import type { MigrationFile, RolloutPolicy, SchemaEngine } from "../dynamic-providers/schema-rollout/types";
import type { TenantDatabaseSpec } from "./config";

export interface SchemaSpec {
  /** Database name (`app`): every tenant database of this name gets the files. */
  database: string;
  engine: SchemaEngine;
  /** Folder of migration files, relative to the project. */
  migrations: string;
  /** Seed file, relative to the project. */
  seed?: string;
  policy: RolloutPolicy;
}

/** The files of a SchemaSpec as read from disk. */
export interface SchemaFiles {
  files: MigrationFile[];
  seed?: MigrationFile;
}

export const SCHEMA_DEFAULTS = { canary: 1, perServer: 4, parallel: 16, maxFailures: 0 } as const;
/** A rollout's connections come out of a server's reserve: keep some for admin and replication. */
export const MAX_PER_SERVER = CONNECTION_RESERVE - 4;
const FIELDS = ["migrations", "seed", "canary", "perServer", "parallel", "maxFailures"];
export const MIGRATION_FILE = /^(\d+)_[A-Za-z0-9_-]+\.sql$/;

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);

export function validateSchemas(raw: unknown, databases: TenantDatabaseSpec[], problem: (path: string, message: string) => void): SchemaSpec[] {
  if (raw === undefined) return [];
  if (!isRecord(raw)) {
    problem("schemas", "schemas must be a map of database name → { migrations: <folder>, … }");
    return [];
  }
  const out: SchemaSpec[] = [];
  for (const [database, v] of Object.entries(raw)) {
    const p = `schemas.${database}`;
    const who = `schemas of database "${database}"`;
    const dbs = databases.filter((d) => d.database === database);
    if (!isRecord(v)) {
      problem(p, `${who}: must be a map { migrations: <folder>, seed?, canary?, perServer?, parallel?, maxFailures? }`);
      continue;
    }
    for (const k of Object.keys(v)) if (!FIELDS.includes(k)) problem(`${p}.${k}`, `${who}: unknown field "${k}" (expected ${FIELDS.map((f) => `"${f}"`).join(", ")})`);
    if (!dbs.length) {
      problem(p, `${who}: no tenant has a database named "${database}"`);
      continue;
    }
    const engines = [...new Set(dbs.map((d) => d.engine))];
    if (engines.length > 1) {
      problem(p, `${who}: its tenant databases use several engines (${engines.join(", ")}); one folder of migrations is one SQL dialect`);
      continue;
    }
    const engine = engines[0]!;
    if (engine !== "postgres" && engine !== "mysql") {
      problem(p, `${who}: ${engine} databases have no schema; migrations are for postgres and mysql databases`);
      continue;
    }
    if (typeof v.migrations !== "string" || !v.migrations) problem(`${p}.migrations`, `${who}: migrations must name a folder of .sql files, relative to the project`);
    if (v.seed !== undefined && (typeof v.seed !== "string" || !v.seed)) problem(`${p}.seed`, `${who}: seed must name a .sql file, relative to the project`);
    const int = (k: "perServer" | "parallel" | "maxFailures", min: number, max: number): number => {
      const x = v[k] ?? SCHEMA_DEFAULTS[k];
      if (typeof x !== "number" || !Number.isInteger(x) || x < min || x > max) {
        problem(`${p}.${k}`, `${who}: ${k} must be a whole number from ${min} to ${max}, got ${JSON.stringify(v[k])}${k === "perServer" ? ` (a rollout's connections come out of each server's reserve of ${CONNECTION_RESERVE})` : ""}`);
        return SCHEMA_DEFAULTS[k];
      }
      return x;
    };
    const tenants = dbs.map((d) => d.tenant).sort();
    let canary: string[] = [];
    const c = v.canary ?? SCHEMA_DEFAULTS.canary;
    if (typeof c === "number" && Number.isInteger(c) && c >= 0) canary = tenants.slice(0, c);
    else if (Array.isArray(c) && c.every((x) => typeof x === "string")) {
      for (const t of c as string[]) if (!tenants.includes(t)) problem(`${p}.canary`, `${who}: canary tenant "${t}" has no "${database}" database`);
      canary = c as string[];
    } else problem(`${p}.canary`, `${who}: canary must be a list of tenant names or a number of tenants, got ${JSON.stringify(v.canary)}`);
    const policy = { canary, perServer: int("perServer", 1, MAX_PER_SERVER), parallel: int("parallel", 1, 256), maxFailures: int("maxFailures", 0, 1_000_000) };
    if (typeof v.migrations === "string" && v.migrations) out.push({ database, engine, migrations: v.migrations, ...(typeof v.seed === "string" && v.seed ? { seed: v.seed } : {}), policy });
  }
  return out;
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** Read a SchemaSpec's folder (and seed) under `root`; problems name the config path and the file. */
export function loadSchemaFiles(s: SchemaSpec, root: string, problem: (path: string, message: string) => void): SchemaFiles | undefined {
  const p = `schemas.${s.database}`;
  const dir = path.resolve(root, s.migrations);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    problem(`${p}.migrations`, `database "${s.database}": migrations folder ${s.migrations} does not exist (looked in ${dir})`);
    return undefined;
  }
  const seedPath = s.seed ? path.resolve(root, s.seed) : undefined;
  const byNumber = new Map<number, string>();
  const files: MigrationFile[] = [];
  let ok = true;
  for (const f of readdirSync(dir).sort()) {
    const full = path.join(dir, f);
    if (!f.endsWith(".sql") || full === seedPath) continue;
    const m = MIGRATION_FILE.exec(f);
    if (!m) {
      problem(`${p}.migrations`, `database "${s.database}": ${path.join(s.migrations, f)} is not named <number>_<name>.sql (e.g. 0001_init.sql)`);
      ok = false;
      continue;
    }
    const n = Number(m[1]);
    if (byNumber.has(n)) {
      problem(`${p}.migrations`, `database "${s.database}": ${f} and ${byNumber.get(n)} have the same number ${n}`);
      ok = false;
      continue;
    }
    byNumber.set(n, f);
    const bytes = readFileSync(full);
    files.push({ name: f.replace(/\.sql$/, ""), checksum: sha256(bytes), sql: bytes.toString("utf8") });
  }
  // Applied in the order of their names: numbers of one width keep that the order of the numbers.
  const widths = new Set([...byNumber.values()].map((f) => MIGRATION_FILE.exec(f)![1]!.length));
  if (widths.size > 1) {
    problem(`${p}.migrations`, `database "${s.database}": file numbers have different widths (${[...byNumber.values()].join(", ")}): pad them with zeros to one width (0001_…, 0002_…)`);
    ok = false;
  }
  let seed: MigrationFile | undefined;
  if (seedPath) {
    if (!existsSync(seedPath)) {
      problem(`${p}.seed`, `database "${s.database}": seed file ${s.seed} does not exist (looked in ${seedPath})`);
      ok = false;
    } else {
      const bytes = readFileSync(seedPath);
      seed = { name: "seed", checksum: sha256(bytes), sql: bytes.toString("utf8") };
    }
  }
  return ok ? { files, ...(seed ? { seed } : {}) } : undefined;
}
