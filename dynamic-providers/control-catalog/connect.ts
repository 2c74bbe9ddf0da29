/** How a dynamic provider talks to the control catalog: one admin connection per call. */
import { Client, type ClientConfig } from "pg";
import type { CatalogRef } from "../tenant-database/types";

export interface CatalogAccess {
  catalog: CatalogRef;
  /** Secret. */
  catalogPassword: string;
  /** Where this process connects when that is not the catalog's address (a tunnel's end). */
  catalogVia?: { host: string; port: number };
}

export function catalogConfig(i: CatalogAccess): ClientConfig {
  const at = i.catalogVia ?? i.catalog;
  return { ...(i.catalog.tls ? { ssl: { rejectUnauthorized: false } } : {}), host: at.host, port: at.port, user: i.catalog.adminUser, password: i.catalogPassword, database: i.catalog.database, connectionTimeoutMillis: 10_000 };
}

export async function withCatalog<T>(i: CatalogAccess, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client(catalogConfig(i));
  c.on("error", () => undefined);
  try {
    await c.connect();
  } catch (e) {
    throw new Error(`cannot reach the control catalog at ${i.catalog.host}:${i.catalog.port}: ${(e as Error).message}`);
  }
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}
