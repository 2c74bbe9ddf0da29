/** The local platform: each server is a LocalServer (a real server process on this machine), each
 * proxy host a LocalProxy (a real proxy process), the control catalog a database on its own
 * LocalServer. */
import * as pulumi from "@pulumi/pulumi";
import { ControlCatalog } from "../../../dynamic-providers/control-catalog";
import { LocalProxy } from "../../../dynamic-providers/local-proxy";
import { LocalServer } from "../../../dynamic-providers/local-server";
import { CATALOG_DATABASE, CATALOG_SERVER, type Platform, type PlatformCatalog, type PlatformServer, type ServerRequest } from "../index";


export function localPlatform(stack: string): Platform {
  const server = (req: ServerRequest, parent: Parameters<Platform["server"]>[1]): PlatformServer => {
    const s = new LocalServer(
      req.serverName,
      { engine: req.engine, serverName: req.serverName, stack, region: req.region, role: req.role, tenant: req.tenant, database: req.database, ...(req.maxmemoryMb ? { maxmemoryMb: req.maxmemoryMb } : {}) },
      { parent },
    );
    return { host: s.host, port: s.port, adminUser: s.adminUser, adminPassword: s.adminPassword, version: s.version };
  };
  return {
    name: "local",
    server,
    redisInstances: true,
    controlCatalog(parent): PlatformCatalog {
      const s = server({ serverName: CATALOG_SERVER, engine: "postgres", region: "local", role: "catalog" }, parent);
      const c = new ControlCatalog(
        "control-catalog",
        { serverName: CATALOG_SERVER, host: s.host, port: s.port, adminUser: s.adminUser, adminPassword: s.adminPassword, database: CATALOG_DATABASE },
        { parent },
      );
      return { serverName: CATALOG_SERVER, host: c.host, port: c.port, adminUser: c.adminUser, adminPassword: c.adminPassword, database: c.database, url: c.url, tls: false };
    },
    proxyFleet(req, parent) {
      const proxies = Array.from({ length: req.replicas }, (_, i) => {
        const proxyId = `proxy-${i + 1}`;
        // Without MySQL (Redis) tenant databases the input is left out, so stacks from before it see no change.
        return new LocalProxy(proxyId, { proxyId, stack, catalogUrl: req.catalogUrl, ...(req.mysql ? { mysql: true } : {}), ...(req.redis ? { redis: true } : {}) }, { parent });
      });
      return {
        endpoints: pulumi.all(proxies.map((p) => pulumi.interpolate`${p.host}:${p.port}`)),
        adminEndpoints: pulumi.all(proxies.map((p) => pulumi.interpolate`${p.host}:${p.adminPort}`)),
        ...(req.mysql ? { mysqlEndpoints: pulumi.all(proxies.map((p) => pulumi.interpolate`${p.host}:${p.mysqlPort}`)) } : {}),
        ...(req.redis ? { redisEndpoints: pulumi.all(proxies.map((p) => pulumi.interpolate`${p.host}:${p.redisPort}`)) } : {}),
      };
    },
  };
}
