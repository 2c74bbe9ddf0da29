#!/usr/bin/env -S npx tsx
/**
 * npm run status [-- [tenant[/database]] [--stack local] [--json]]
 * Every tenant database: isolation, region, server, status (ready, migrating_sync 42%, migrating,
 * failed: …), route epoch, schema version (and which are behind their schema's head) and the last
 * migration's timings.
 */
import { parseArgs } from "node:util";
import { Client } from "pg";
import { setup } from "./setup";
import { pulumiOk } from "./lib/pulumi-cli";
import { readCatalog, renderTable, statusRows } from "./lib/status";
import { loadTenantSchemas } from "../dynamic-providers/schema-rollout/catalog";

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({ options: { stack: { type: "string", default: "local" }, json: { type: "boolean", default: false } }, allowPositionals: true });
  const [tenant, database] = (positionals[0] ?? "").split("/");
  const toolchain = await setup({ quiet: true });
  const out = JSON.parse((await pulumiOk(toolchain, ["stack", "output", "--json", "--show-secrets", "--stack", values.stack!])).stdout) as {
    catalogUrl?: string;
    tenantDatabases?: Record<string, Record<string, { engine: string; isolation: string; region: string; server: string }>>;
  };
  if (!out.catalogUrl || !out.tenantDatabases) throw new Error(`stack ${values.stack} has no catalogUrl/tenantDatabases outputs: run \`npm start\` (or \`pulumi up\`) first`);
  const c = new Client({ connectionString: out.catalogUrl, connectionTimeoutMillis: 10_000 });
  await c.connect();
  try {
    const rows = statusRows(out.tenantDatabases, await readCatalog(c), tenant ? { tenant, database } : undefined, await loadTenantSchemas(c));
    const behind = rows.filter((r) => r.schema?.behind);
    if (tenant && rows.length === 0) throw new Error(`no tenant database ${positionals[0]} in stack ${values.stack}`);
    console.log(values.json ? JSON.stringify(rows, null, 2) : renderTable(rows));
    if (!values.json && behind.length) console.log(`\n${behind.length} tenant database${behind.length > 1 ? "s are" : " is"} behind its schema's head: ${behind.map((r) => `${r.tenant}/${r.database}`).join(", ")} (the next \`pulumi up\` applies what they miss)`);
  } finally {
    await c.end();
  }
}

main().catch((e: Error) => {
  console.error(`[status] ${e.message}`);
  process.exit(1);
});
