/**
 * ControlCatalog: the catalog database on its server, with the schema migrated to this program's
 * version (create and every update). The server itself is a platform server (a LocalServer
 * locally); this resource owns only the database inside it.
 */
import type * as pulumi from "@pulumi/pulumi";
import { Client, escapeIdentifier as ident } from "pg";
import { migrateCatalog, CATALOG_VERSION } from "../../proxy/catalog/schema";
import { isUnknown } from "../preview";
import { bastionOf, throughBastion } from "../tunnel/ssh-tunnel";
import type { ControlCatalogInputs, ControlCatalogOutputs } from "./types";

function url(i: ControlCatalogInputs): string {
  return `postgres://${encodeURIComponent(i.adminUser)}:${encodeURIComponent(i.adminPassword)}@${i.host}:${i.port}/${encodeURIComponent(i.database)}${i.tls ? "?sslmode=no-verify" : ""}`;
}

async function ensure(i: ControlCatalogInputs): Promise<ControlCatalogOutputs> {
  const target = { host: i.host, port: i.port };
  await throughBastion(bastionOf(i), [target], (t) => migrate(i, t.local(target)));
  // The URL names the catalog's own address (what proxies use), never a tunnel's.
  return { ...i, url: url(i), schemaVersion: CATALOG_VERSION };
}

async function migrate(i: ControlCatalogInputs, at: { host: string; port: number }): Promise<void> {
  const ssl = i.tls ? { ssl: { rejectUnauthorized: false } } : {};
  const admin = new Client({ ...ssl, host: at.host, port: at.port, user: i.adminUser, password: i.adminPassword, database: "postgres", connectionTimeoutMillis: 10_000 });
  await admin.connect();
  try {
    if (!(await admin.query("select 1 from pg_database where datname = $1", [i.database])).rowCount) {
      await admin.query(`create database ${ident(i.database)}`);
    }
  } finally {
    await admin.end();
  }
  const c = new Client({ ...ssl, host: at.host, port: at.port, user: i.adminUser, password: i.adminPassword, database: i.database, connectionTimeoutMillis: 10_000 });
  await c.connect();
  try {
    await migrateCatalog(c);
  } finally {
    await c.end();
  }
}

export const provider: pulumi.dynamic.ResourceProvider = {
  async check(_olds, news: Record<string, unknown>) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    if (typeof news.database !== "string" || !/^[a-z_][a-z0-9_]{0,62}$/.test(news.database)) failures.push({ property: "database", reason: "database must be a lower-case PostgreSQL identifier" });
    return failures.length ? { failures } : { inputs: news };
  },
  async diff(_id, olds: ControlCatalogOutputs, news: ControlCatalogInputs) {
    // At preview, an address that depends on a server being updated is unknown: that is not a
    // move (the update keeps its address), so it must not show as a replacement in a review. If it
    // does change, `pulumi up` diffs again with the real value and replaces then.
    const keys = ["host", "port", "database"] as const;
    const unknown = keys.filter((k) => isUnknown(news[k]));
    const moved = keys.filter((k) => !isUnknown(news[k]) && olds[k] !== news[k]);
    return { changes: moved.length > 0 || unknown.length > 0 || olds.adminPassword !== news.adminPassword || olds.schemaVersion !== CATALOG_VERSION, replaces: moved };
  },
  async create(inputs: ControlCatalogInputs) {
    return { id: `${inputs.serverName}/${inputs.database}`, outs: await ensure(inputs) };
  },
  async update(_id, _olds, news: ControlCatalogInputs) {
    return { outs: await ensure(news) };
  },
  async delete() {
    // The catalog lives and dies with its server (deleted with the stack).
  },
};
