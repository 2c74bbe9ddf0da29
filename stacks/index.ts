/**
 * The program: stack config → validated spec → Fleet. Config problems stop the preview before
 * any resource is touched, each naming the tenant, the database and the field.
 */
import * as pulumi from "@pulumi/pulumi";
import { Fleet } from "../components/fleet";
import { tenantPlacements } from "../components/fleet-output";
import * as path from "node:path";
import { formatProblems, validateFleetConfig, type ConfigProblem } from "./config";
import { loadSchemaFiles, type SchemaFiles } from "./schemas";
import { installStackTraces } from "./stack-traces";

installStackTraces();

/**
 * The stack's outputs. The program is an async function that builds the fleet after its first
 * `await`: Pulumi stores the call stack of every resource registration in the state, and out of
 * the module loader's frames that stack is a few frames shorter (a TenantDatabase's stored stackTrace
 * 762 → 596 bytes, `pulumi stack export` of a 5-tenant stack).
 */
export = async () => {
  await Promise.resolve();
  const config = new pulumi.Config("tenantfleet");
  const result = validateFleetConfig({
    platform: config.get("platform"),
    regions: config.getObject<unknown>("regions"),
    tenants: config.getObject<unknown>("tenants"),
    proxyReplicas: config.getObject<unknown>("proxyReplicas"),
    rollbackWindowHours: config.getObject<unknown>("rollbackWindowHours"),
    protectTenantDatabases: config.getObject<unknown>("protectTenantDatabases"),
    redisHostMemoryMb: config.getObject<unknown>("redisHostMemoryMb"),
    schemas: config.getObject<unknown>("schemas"),
    aws: config.getObject<unknown>("aws"),
    gcp: config.getObject<unknown>("gcp"),
  });
  if (!result.ok) {
    throw new pulumi.RunError(formatProblems(result.problems));
  }
  // The migration files, read relative to the project (stacks/..), whatever the working directory.
  const fileProblems: ConfigProblem[] = [];
  const schemaFiles = Object.fromEntries((result.spec.schemas ?? []).map((s) => [s.database, loadSchemaFiles(s, path.resolve(__dirname, ".."), (p, message) => fileProblems.push({ path: p, message }))]));
  if (fileProblems.length) throw new pulumi.RunError(formatProblems(fileProblems));

  const fleet = new Fleet("fleet", {
    spec: result.spec,
    stack: pulumi.getStack(),
    bastionPrivateKey: config.getSecret("bastionPrivateKey"),
    schemaFiles: schemaFiles as Record<string, SchemaFiles>,
  });

  return {
    /** The contract for other repos (components/fleet-output.ts, README "Stack outputs"): proxy
     * endpoints per engine; per tenant → database: engine, isolation, region, connection string (secret). */
    fleet: fleet.contract,
    /** Every server: engine, region, role, host, port, adminUser, adminPassword (secret). */
    servers: fleet.servers,
    /** The proxy fleet: `host:port` endpoints applications connect to, and their admin endpoints. */
    proxies: fleet.proxies,
    /** Per tenant → database: engine, isolation, region, server, status, epoch (the connection
     * string is in `fleet`). */
    tenantDatabases: tenantPlacements(fleet.tenantDatabases),
    /** Secret: the control catalog (`npm run status` reads it). */
    catalogUrl: fleet.catalogUrl,
  };
};
