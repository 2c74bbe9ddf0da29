/**
 * For tests and benchmarks (not product code): real Redis instances as LocalServer creates them,
 * and Redis tenant databases on them with their routes in a LocalPgFleet's catalog, as
 * TenantDatabase makes them: the tenant's ACL user with the SHA-256 verifier the route holds.
 */
import { Client } from "pg";
import { LocalPgFleet, type ProxyProcess } from "./local-pg-fleet";
import { provider } from "../../dynamic-providers/local-server/provider";
import type { LocalServerInputs, LocalServerOutputs } from "../../dynamic-providers/local-server/types";
import type { ServerAccess } from "../../dynamic-providers/engines";
import { ensureTenantUser, withAdmin } from "../../dynamic-providers/engines/redis/tenant-db";
import { clientDatabaseName, upsertRoute, type TenantDbKey } from "../../proxy/catalog/routes";
import { redisVerifier } from "../../proxy/redis/verifier";

export interface RedisTenant extends TenantDbKey {
  /** The ACL user (`<database>__<tenant>`), as in the connection string. */
  user: string;
  password: string;
}

export class RedisServers {
  readonly servers: LocalServerOutputs[] = [];
  constructor(private readonly fleet: LocalPgFleet) {}

  async server(name: string): Promise<LocalServerOutputs> {
    const inputs: LocalServerInputs = { engine: "redis", serverName: name, stack: this.fleet.stack, region: "local", role: "shared" };
    const checked = await provider.check!({}, inputs);
    if (checked.failures?.length) throw new Error(checked.failures.map((f) => f.reason).join("; "));
    const o = (await provider.create(checked.inputs as LocalServerInputs)).outs as LocalServerOutputs;
    this.servers.push(o);
    return o;
  }

  static access(s: LocalServerOutputs): ServerAccess {
    return { name: s.serverName, host: s.host, port: s.port, adminUser: s.adminUser, adminPassword: s.adminPassword };
  }

  admin<T>(s: LocalServerOutputs, fn: (c: import("ioredis").default) => Promise<T>): Promise<T> {
    return withAdmin(RedisServers.access(s), fn);
  }

  /** A tenant database on instance `s` (its user) and its route (engine redis) in the catalog. */
  async tenant(k: TenantDbKey, s: LocalServerOutputs): Promise<RedisTenant> {
    const user = clientDatabaseName(k);
    const t = { ...k, user, password: `pw-${k.tenant}-${Math.random().toString(36).slice(2, 10)}` };
    await ensureTenantUser(RedisServers.access(s), { user, verifier: redisVerifier(t.password) });
    const c = new Client(this.fleet.catalogConfig);
    await c.connect();
    try {
      await upsertRoute(c, { ...k, engine: "redis", role: user, scramVerifier: redisVerifier(t.password), server: s.serverName, host: s.host, port: s.port, backendDatabase: user });
    } finally {
      await c.end();
    }
    return t;
  }

  async close(): Promise<void> {
    for (const o of this.servers.splice(0)) await provider.delete!(`${o.stack}/${o.dirName}`, o).catch(() => undefined);
  }
}

export interface RedisFleet {
  fleet: LocalPgFleet;
  rs: RedisServers;
  /** Two instances for acme's cache (the second one empty: a move's target) and one for globex's. */
  a1: LocalServerOutputs;
  a2: LocalServerOutputs;
  g1: LocalServerOutputs;
  p1: ProxyProcess;
  p2: ProxyProcess;
  acme: RedisTenant;
  globex: RedisTenant;
}

/** A catalog, three Redis instances, two proxy processes with their Redis listeners, and two tenant databases. */
export async function redisFleet(stack: string, proxyArgs: string[] = []): Promise<RedisFleet> {
  const fleet = await LocalPgFleet.create({ stack });
  const rs = new RedisServers(fleet);
  try {
    const [a1, a2, g1] = [await rs.server("acme-cache-1"), await rs.server("acme-cache-2"), await rs.server("globex-cache-1")];
    const acme = await rs.tenant({ tenant: "acme", database: "cache" }, a1);
    await ensureTenantUser(RedisServers.access(a2), { user: acme.user, verifier: redisVerifier(acme.password) });
    const globex = await rs.tenant({ tenant: "globex", database: "cache" }, g1);
    const args = ["--redis-listen", "127.0.0.1:0", ...proxyArgs];
    const p1 = await fleet.startProxy("proxy-1", { extraArgs: args });
    const p2 = await fleet.startProxy("proxy-2", { extraArgs: args });
    return { fleet, rs, a1, a2, g1, p1, p2, acme, globex };
  } catch (e) {
    await rs.close();
    await fleet.close();
    throw e;
  }
}
