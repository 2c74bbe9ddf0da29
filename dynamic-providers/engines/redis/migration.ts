/**
 * A Redis tenant database moved by Redis's own replication. Each tenant database is its own
 * instance, so the target instance replicates the source one whole (`REPLICAOF`, a full sync then
 * the stream), through a replication-only ACL user made for this migration on the source.
 *
 * Cutover (inside the orchestrator's pause, every proxy drained): `CLIENT PAUSE … WRITE` on the
 * source, the target's replicated offset at or past the source's (≥, never ==: the source's pings
 * move its offset while it is paused), `REPLICAOF NO ONE` on the target, keys per db compared.
 * The source stays write-paused until it is fenced (its tenant user off) or, on failure, until
 * the target is abandoned; the pause's own timeout (the lease) lifts it if this process dies.
 *
 * Not carried by replication, and handled elsewhere: ACL users (the tenant's is made on the target
 * in prepareTarget), the script cache (the proxy loads what each session used), `maxmemory` (each
 * instance has its own, from the stack config).
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import type { RouteTarget } from "../../../proxy/catalog/routes";
import type { ServerAccess } from "../index";
import type { EngineMigration, MigrationMethod, PreflightResult, SyncProgress, Verification } from "../../migration/types";
import { dumpInstance, ensureTenantUser, fenceTenantUser, openAdmin } from "./tenant-db";
import { KeptConnections } from "../kept-connections";

type Redis = import("ioredis").default;

export interface RedisMigrationArgs {
  source: ServerAccess;
  target: ServerAccess;
  /** The tenant database's ACL user and its verifier (SHA-256 hex). */
  user: string;
  verifier: string;
  /** Longest the source stays write-paused if this process dies inside the cutover (ms). */
  pauseLeaseMs?: number;
  /** Free disk where the safety backup is written (and, locally, the instances' data): the platform's probe. */
  freeBytes?: () => Promise<number | undefined>;
}

/** Prefix of the replication users migrations make on a source instance. */
const REPL_PREFIX = "tf_repl_";
/** Longest the source waits for the target to join the safety backup's full sync (seconds). */
const SHARED_SYNC_WAIT_S = 3;
/** Redis's default replica output-buffer limit, restored after a move. */
const DEFAULT_REPLICA_BUFFER = "replica 256mb 64mb 60";

export function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(":");
    if (i > 0 && !line.startsWith("#")) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

/** `db0:keys=3,expires=1,avg_ttl=0` lines of INFO keyspace → keys and expiring keys per db. */
export function keyspace(info: Record<string, string>): Map<string, { keys: number; expires: number }> {
  const out = new Map<string, { keys: number; expires: number }>();
  for (const [k, v] of Object.entries(info)) {
    if (!/^db\d+$/.test(k)) continue;
    const f = Object.fromEntries(v.split(",").map((p) => p.split("=")));
    out.set(k, { keys: Number(f.keys ?? 0), expires: Number(f.expires ?? 0) });
  }
  return out;
}

const versionTuple = (v: string) => v.split(".").map((n) => Number(n) || 0);
function versionAtLeast(a: string, b: string): boolean {
  const x = versionTuple(a);
  const y = versionTuple(b);
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0);
  return true;
}

export class RedisMigration implements EngineMigration {
  readonly nativeMechanism = "Redis replication (REPLICAOF of the tenant database's own instance)";
  readonly target: RouteTarget;
  private sizeBytes = 0;
  private readonly kept = new KeptConnections<ServerAccess, Redis>({ open: openAdmin, healthy: (c) => c.status === "ready", destroy: (c) => c.disconnect(), end: (c) => c.disconnect() });

  constructor(private readonly a: RedisMigrationArgs) {
    this.target = { server: a.target.name, host: a.target.host, port: a.target.port, backendDatabase: a.user };
  }

  /** `fn` on a kept admin connection to `s` (no login inside the pause). */
  private on<T>(s: ServerAccess, fn: (c: Redis) => Promise<T>): Promise<T> {
    return this.kept.on(s, fn);
  }

  private info(s: ServerAccess, section: string): Promise<Record<string, string>> {
    return this.on(s, async (c) => parseInfo((await c.info(section)) as string));
  }

  private get replUser(): string {
    return `${REPL_PREFIX}${this.a.user}`;
  }

  async cleanupLeftovers(): Promise<string[]> {
    const removed: string[] = [];
    const role = await this.info(this.a.target, "replication");
    if (role.role === "slave") {
      await this.on(this.a.target, (c) => c.call("REPLICAOF", "NO", "ONE"));
      removed.push(`replication of ${role.master_host}:${role.master_port} on ${this.a.target.name}`);
    }
    // The source's settings for a move (a full sync that waits for the backup, no output-buffer
    // limit) are an attempt's, never a leftover.
    await this.on(this.a.source, (c) => restoreSourceSettings(c));
    const users = (await this.on(this.a.source, (c) => c.call("ACL", "USERS"))) as string[];
    if (users.includes(this.replUser)) {
      await this.dropReplUser();
      removed.push(`replication user ${this.replUser} on ${this.a.source.name}`);
    }
    return removed;
  }

  async preflight(): Promise<PreflightResult> {
    const [srcServer, tgtServer, srcMem, tgtMem] = await Promise.all([
      this.info(this.a.source, "server"),
      this.info(this.a.target, "server"),
      this.info(this.a.source, "memory"),
      this.info(this.a.target, "memory"),
    ]);
    const problems: string[] = [];
    const sv = srcServer.redis_version ?? "?";
    const tv = tgtServer.redis_version ?? "?";
    if (!versionAtLeast(tv, sv)) problems.push(`the target ${this.a.target.name} runs Redis ${tv}, older than the source's ${sv}: a replica must be at least its source's version`);
    const used = Number(srcMem.used_memory ?? 0);
    const srcMax = Number(srcMem.maxmemory ?? 0);
    const tgtMax = Number(tgtMem.maxmemory ?? 0);
    if (tgtMax > 0 && (srcMax === 0 || tgtMax < srcMax)) {
      problems.push(`the target ${this.a.target.name} has maxmemory ${mb(tgtMax)}, less than the source's ${srcMax ? mb(srcMax) : "(unlimited)"}: give the tenant database at least as much memory on its new placement`);
    }
    if (tgtMax > 0 && tgtMax < used) problems.push(`the source uses ${mb(used)}, more than the target's maxmemory ${mb(tgtMax)}`);
    const dataset = Number(srcMem.used_memory_dataset ?? used);
    // The safety backup (an RDB, about the dataset's size) and the target's AOF (about as much again).
    const free = await this.a.freeBytes?.();
    const need = dataset * 2 + 64 * 1024 * 1024;
    if (free !== undefined && free < need) problems.push(`not enough disk: the safety backup and the target's copy of ${mb(dataset)} of data need about ${mb(need)}, ${mb(free)} are free; free some space and run \`pulumi up\` again`);
    if (problems.length) throw new Error(`cannot move ${this.a.user}: ${problems.join("; ")}`);
    this.sizeBytes = dataset;
    return { method: "native", notes: [], sizeBytes: this.sizeBytes };
  }

  async backup(file: string): Promise<{ bytes: number }> {
    // One transfer for both: the safety backup (redis-cli --rdb, a replica of its own) and the
    // target's full sync connect within moments of each other, so the source waits for both (at
    // most SHARED_SYNC_WAIT_S) and streams one snapshot to them from one fork, instead of forking
    // twice and sending the instance twice. Put back to starting at once in removeReplication.
    await this.on(this.a.source, async (c) => {
      await c.call("CONFIG", "SET", "repl-diskless-sync-delay", String(SHARED_SYNC_WAIT_S));
      await c.call("CONFIG", "SET", "repl-diskless-sync-max-replicas", "2");
    });
    const partial = `${file}.partial`;
    const r = await dumpInstance(this.a.source, partial);
    await fs.rename(partial, file);
    return r;
  }

  async prepareTarget(_method: MigrationMethod): Promise<void> {
    await ensureTenantUser(this.a.target, { user: this.a.user, verifier: this.a.verifier });
  }

  async startReplication(): Promise<void> {
    const password = randomBytes(24).toString("base64url");
    await this.on(this.a.source, async (c) => {
      await c.call("ACL", "SETUSER", this.replUser, "reset", "on", `>${password}`, "+psync", "+replconf", "+ping");
      await c.call("ACL", "SAVE");
      // A full sync of a big instance must not be cut by the replica output-buffer limit (a sync loop).
      await c.call("CONFIG", "SET", "client-output-buffer-limit", "replica 0 0 0");
    });
    await this.on(this.a.target, async (c) => {
      // An empty target parses the snapshot as it arrives instead of writing it to disk first and
      // loading it afterwards (an instance started before the setting; settings.ts has it).
      await c.call("CONFIG", "SET", "repl-diskless-load", "on-empty-db");
      await c.call("CONFIG", "SET", "masteruser", this.replUser);
      await c.call("CONFIG", "SET", "masterauth", password);
      await c.call("REPLICAOF", this.a.source.host, String(this.a.source.port));
    });
    // The target has joined the backup's full sync, or needed none (a move back onto a fenced copy
    // continues it from the source's backlog, PSYNC): the backup need not wait for it any more.
    for (const end = Date.now() + 2000; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
      const r = await this.info(this.a.target, "replication");
      if (r.master_sync_in_progress === "1" || r.master_link_status === "up") break;
    }
    await this.on(this.a.source, (c) => c.call("CONFIG", "SET", "repl-diskless-sync-delay", "0"));
  }

  async syncProgress(): Promise<SyncProgress> {
    const r = await this.info(this.a.target, "replication");
    if (r.role !== "slave") throw new Error(`${this.a.target.name} is no longer replicating`);
    const done = r.master_link_status === "up" && r.master_sync_in_progress === "0";
    if (done) return { percent: 100, done: true, tables: 1, tablesDone: 1 };
    const total = Number(r.master_sync_total_bytes ?? -1);
    const read = Number(r.master_sync_read_bytes ?? 0);
    const of = total > 0 ? total : this.sizeBytes;
    const percent = of > 0 ? Math.min(99, (100 * read) / of) : 0;
    return { percent, done: false, tables: 1, tablesDone: 0 };
  }

  /** Until the target has applied what the source had written when asked (offsets, ≥). */
  async markerLag(timeoutMs: number): Promise<number> {
    const started = Date.now();
    const at = Number((await this.info(this.a.source, "replication")).master_repl_offset);
    for (;;) {
      const r = await this.info(this.a.target, "replication");
      if (r.master_link_status === "up" && Number(r.slave_repl_offset) >= at) return Date.now() - started;
      if (Date.now() - started > timeoutMs) throw new Error(`${this.a.target.name} did not reach the source's replication offset ${at} within ${timeoutMs} ms (at ${r.slave_repl_offset}, link ${r.master_link_status})`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** Paused: no client write reaches the source; the target takes every byte of it, then stands alone. */
  async finishWhilePaused(): Promise<{ sequences: number }> {
    await this.on(this.a.source, (c) => c.call("CLIENT", "PAUSE", String(this.a.pauseLeaseMs ?? 30_000), "WRITE"));
    await this.markerLag(30_000);
    await this.on(this.a.target, (c) => c.call("REPLICAOF", "NO", "ONE"));
    return { sequences: 0 };
  }

  async copyWhilePaused(): Promise<void> {
    throw new Error("Redis tenant databases move by replication only");
  }

  /** Keys per db equal on both sides (a key that expired on the promoted target alone may be missing: at most the source's expiring keys). */
  async verify(): Promise<Verification> {
    const started = Date.now();
    const [s, t] = await Promise.all([this.info(this.a.source, "keyspace"), this.info(this.a.target, "keyspace")]);
    const src = keyspace(s);
    const tgt = keyspace(t);
    const mismatches: string[] = [];
    let keys = 0;
    for (const db of new Set([...src.keys(), ...tgt.keys()])) {
      const a = src.get(db) ?? { keys: 0, expires: 0 };
      const b = tgt.get(db) ?? { keys: 0, expires: 0 };
      keys += a.keys;
      if (b.keys > a.keys || a.keys - b.keys > a.expires) mismatches.push(`${db}: source ${a.keys} keys, target ${b.keys}`);
    }
    return { ok: mismatches.length === 0, tables: Math.max(src.size, tgt.size), rows: keys, sequences: 0, mismatches, ms: Date.now() - started };
  }

  private async dropReplUser(): Promise<void> {
    await this.on(this.a.source, async (c) => {
      await c.call("ACL", "DELUSER", this.replUser);
      await c.call("ACL", "SAVE");
      await restoreSourceSettings(c);
    });
  }

  async removeReplication(): Promise<void> {
    await tolerate(this.on(this.a.target, async (c) => {
      await c.call("REPLICAOF", "NO", "ONE");
      await c.call("CONFIG", "SET", "masteruser", "");
      await c.call("CONFIG", "SET", "masterauth", "");
    }));
    await tolerate(this.dropReplUser());
  }

  async fenceSource(): Promise<void> {
    await fenceTenantUser(this.a.source, this.a.user);
    await this.on(this.a.source, (c) => c.call("CLIENT", "UNPAUSE"));
  }

  /** Before the commit, on failure: the target's copy goes, and the source takes writes again. */
  async abandonTarget(): Promise<void> {
    await tolerate(this.on(this.a.source, (c) => c.call("CLIENT", "UNPAUSE")));
    await this.on(this.a.target, async (c) => {
      await c.call("REPLICAOF", "NO", "ONE");
      await c.call("FLUSHALL");
      await c.call("ACL", "DELUSER", this.a.user);
      await c.call("ACL", "SAVE");
    });
  }

  async close(): Promise<void> {
    await this.kept.closeAll();
  }
}

/** A source's replication settings as they are outside a move: Redis's replica buffer limit, full syncs started at once. */
async function restoreSourceSettings(c: Redis): Promise<void> {
  await c.call("CONFIG", "SET", "client-output-buffer-limit", DEFAULT_REPLICA_BUFFER);
  await c.call("CONFIG", "SET", "repl-diskless-sync-delay", "0");
  await c.call("CONFIG", "SET", "repl-diskless-sync-max-replicas", "0");
}

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`;

/** A step that may find its side already gone or done (cleanup after a failure). */
async function tolerate(p: Promise<unknown>): Promise<void> {
  await p.catch(() => undefined);
}
