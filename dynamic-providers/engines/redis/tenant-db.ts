/**
 * A tenant database on its Redis instance: the tenant's ACL user (the instance's default user is
 * off), carrying the SHA-256 the catalog's route holds, so the proxy checks the password a client
 * sends and logs in with it; the fence; the drop; the dump (an RDB). Every call connects as the
 * instance's admin and closes its connection before returning.
 */
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import type { ServerAccess } from "../index";

export interface RedisTenantUser {
  user: string;
  /** SHA-256 of the password, hex (ACL `#<hex>`). */
  verifier: string;
}

/**
 * What a tenant's user may run on its own instance: every command but administration (@admin:
 * CONFIG, REPLICAOF, ACL, SHUTDOWN, DEBUG, MONITOR, …), with CLIENT UNBLOCK given back because the
 * proxy uses it, as the same user, to release a blocked command for a switch. The proxy refuses
 * the rest of what a tenant must not run before it reaches the instance (proxy/README.md).
 */
export const TENANT_ACL = ["~*", "&*", "+@all", "-@admin", "+client|unblock"];

type Redis = import("ioredis").default;

/**
 * How long a connection to an instance reached through a tunnel (a VM platform) waits for it to
 * start: a shared host starts a new tenant database's instance when it next pulls its manifest
 * (every 15 s, components/platforms/vm/redis-instances.ts). Locally an instance runs once its
 * LocalServer exists, and a refused connection is an error at once.
 */
export const INSTANCE_START_WAIT_MS = 120_000;

/** `s` is reached through a tunnel's loopback end (a VM platform's bastion); without a bastion `via` is the server's own address. */
const throughTunnel = (s: ServerAccess): boolean => !!s.via && (s.via.host !== s.host || s.via.port !== s.port);

/** An admin connection to `s` (through its tunnel end when it has one); the caller ends it. */
export async function openAdmin(s: ServerAccess, startWaitMs = throughTunnel(s) ? INSTANCE_START_WAIT_MS : 0): Promise<Redis> {
  const { default: IORedis } = await import("ioredis");
  const at = s.via ?? s;
  const deadline = Date.now() + startWaitMs;
  for (;;) {
    const c = new IORedis({ host: at.host, port: at.port, username: s.adminUser, password: s.adminPassword, lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null, connectTimeout: 10_000 });
    c.on("error", () => undefined);
    try {
      await c.connect();
      return c;
    } catch (e) {
      c.disconnect();
      const message = (e as Error).message;
      // A refused login is an answer from a running instance: no reason to wait.
      if (Date.now() >= deadline || /WRONGPASS|NOAUTH|NOPERM/.test(message)) {
        const waited = startWaitMs ? ` (waited ${Math.round(startWaitMs / 1000)} s for it to start: is its host pulling its manifest? see README "Cloud platforms")` : "";
        throw new Error(`cannot reach Redis instance ${s.name} at ${s.host}:${s.port}: ${message}${waited}`);
      }
      await new Promise((r) => setTimeout(r, 2_000));
    }
  }
}

export async function withAdmin<T>(s: ServerAccess, fn: (c: Redis) => Promise<T>): Promise<T> {
  const c = await openAdmin(s);
  try {
    return await fn(c);
  } finally {
    c.disconnect();
  }
}

/** The tenant's user with its verifier and rights (idempotent), saved in the instance's ACL file. */
export async function ensureTenantUser(s: ServerAccess, t: RedisTenantUser): Promise<void> {
  await withAdmin(s, async (c) => {
    await c.call("ACL", "SETUSER", t.user, "reset", "on", `#${t.verifier}`, ...TENANT_ACL);
    await c.call("ACL", "SAVE");
  });
}

/** The tenant's user off and its connections closed: no proxy, stale or not, can use this instance. */
export async function fenceTenantUser(s: ServerAccess, user: string): Promise<void> {
  await withAdmin(s, async (c) => {
    await c.call("ACL", "SETUSER", user, "off");
    await c.call("ACL", "SAVE");
    await c.call("CLIENT", "KILL", "USER", user).catch(() => undefined);
  });
}

/** The tenant's user and every key of the instance gone (the instance is the tenant database's alone). */
export async function dropTenantDatabase(s: ServerAccess, t: { user: string }): Promise<void> {
  await withAdmin(s, async (c) => {
    await c.call("ACL", "DELUSER", t.user);
    await c.call("ACL", "SAVE");
    await c.call("FLUSHALL");
  });
}

/** An RDB snapshot of the instance into `file` (`redis-cli --rdb`, as the admin). */
export async function dumpInstance(s: ServerAccess, file: string): Promise<{ bytes: number }> {
  const at = s.via ?? s;
  await fs.mkdir(path.dirname(file), { recursive: true });
  await new Promise<void>((resolve, reject) => {
    const p = spawn("redis-cli", ["-h", at.host, "-p", String(at.port), "--user", s.adminUser, "--no-auth-warning", "--rdb", file], {
      env: { ...process.env, REDISCLI_AUTH: s.adminPassword },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    p.stderr.on("data", (d: Buffer) => (err += d.toString()));
    p.on("error", reject);
    p.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`redis-cli --rdb of ${s.name} exited with ${code}: ${err.trim().slice(-500)}`))));
  });
  return { bytes: (await fs.stat(file)).size };
}
