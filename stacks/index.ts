/**
 * The program: stack config → validated spec → Fleet. Config problems stop the preview before
 * any resource is touched, each naming the tenant, the database and the field.
 */
import * as pulumi from "@pulumi/pulumi";
import { Fleet } from "../components/fleet";
import { formatProblems, validateFleetConfig } from "./config";

const config = new pulumi.Config("tenantfleet");
const result = validateFleetConfig({
  platform: config.get("platform"),
  regions: config.getObject<unknown>("regions"),
  tenants: config.getObject<unknown>("tenants"),
  proxyReplicas: config.getObject<unknown>("proxyReplicas"),
  rollbackWindowHours: config.getObject<unknown>("rollbackWindowHours"),
  protectTenantDatabases: config.getObject<unknown>("protectTenantDatabases"),
  aws: config.getObject<unknown>("aws"),
  gcp: config.getObject<unknown>("gcp"),
});
if (!result.ok) {
  throw new pulumi.RunError(formatProblems(result.problems));
}

const fleetResource = new Fleet("fleet", {
  spec: result.spec,
  stack: pulumi.getStack(),
  bastionPrivateKey: config.getSecret("bastionPrivateKey"),
});

/** The contract for other repos (components/fleet-output.ts, README "Stack outputs"): proxy
 * endpoints per engine; per tenant → database: engine, isolation, region, connection string (secret). */
export const fleet = fleetResource.contract;
/** Every server: engine, region, role, host, port, adminUser, adminPassword (secret). */
export const servers = fleetResource.servers;
/** The proxy fleet: `host:port` endpoints applications connect to, and their admin endpoints. */
export const proxies = fleetResource.proxies;
/** Per tenant → database: engine, isolation, region, server, status, connection string (secret). */
export const tenantDatabases = fleetResource.tenantDatabases;
/** Secret: the control catalog (`npm run status` reads it). */
export const catalogUrl = fleetResource.catalogUrl;
