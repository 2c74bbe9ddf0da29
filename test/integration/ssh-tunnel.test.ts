/**
 * The SSH tunnel migrations use to reach private database servers, against a real OpenSSH
 * server (our own `sshd -D`, standing in for a cloud bastion) and a real PostgreSQL server made
 * by the LocalServer provider: node-postgres with SCRAM and several MB each way, concurrent
 * clients, the real `pg_dump` as the migration engine runs it, and the failures an operator
 * would meet (wrong host key, unauthorised key, unreachable bastion, a target the bastion cannot
 * reach, the tunnel closed under a live client).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { Client, type ClientConfig } from "pg";
import { LocalPgFleet, type PgServer, type TenantDb } from "../../scripts/lib/local-pg-fleet";
import { generateKeyPair, startLocalSshd, type LocalSshd } from "../../scripts/lib/local-sshd";
import { openTunnel, withTunnel, TunnelError, type Endpoint, type Tunnel } from "../../dynamic-providers/tunnel/ssh-tunnel";
import { dumpDatabase } from "../../dynamic-providers/engines/postgres/tenant-db";
import { pgBinary } from "../../dynamic-providers/engines/postgres/local";
import { run } from "../../dynamic-providers/local-server/process";

let sshd: LocalSshd;
let fleet: LocalPgFleet;
let pg: PgServer;
let acme: TenantDb;
let target: Endpoint;
/** A port nothing listens on: the bastion's connect to it is refused. */
let closedTarget: Endpoint;
let tunnel: Tunnel;
const tunnelErrors: TunnelError[] = [];
let scratch: string;

/** Successful SSH logins sshd has logged so far. */
const logins = (log: string): number => log.match(/^Accepted publickey for /gm)?.length ?? 0;

const md5 = (b: Buffer): string => createHash("md5").update(b).digest("hex");

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** acme's own login (SCRAM), reaching the server through `via`. */
const acmeVia = (via: Endpoint, extra: Partial<ClientConfig> = {}): ClientConfig => ({ host: via.host, port: via.port, user: acme.role, password: acme.password, database: acme.name, ...extra });

async function connected(cfg: ClientConfig): Promise<Client> {
  const c = new Client(cfg);
  await c.connect();
  return c;
}

function connectOutcome(e: Endpoint): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(e.port, e.host);
    s.once("connect", () => (s.destroy(), resolve("connected")));
    s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

beforeAll(async () => {
  scratch = mkdtempSync(path.join(os.tmpdir(), "tf-tunnel-test-"));
  sshd = await startLocalSshd();
  fleet = await LocalPgFleet.create({ stack: "ssh-tunnel" });
  pg = fleet.catalog; // a real PostgreSQL server like any other; we only need one
  acme = await fleet.tenantDatabase(pg, { tenant: "acme", database: "app" });
  target = { host: pg.host, port: pg.port };
  closedTarget = { host: "127.0.0.1", port: await freePort() };
  // The same target twice shares one listener.
  tunnel = await openTunnel(sshd, [target, closedTarget, { ...target }], { onError: (e) => tunnelErrors.push(e) });
});

afterAll(async () => {
  await tunnel?.close();
  await fleet?.close();
  await sshd?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe("traffic through the tunnel", () => {
  it("a pg client logs in with SCRAM through the bastion and moves 8 MB each way intact", async () => {
    const local = tunnel.local(target);
    expect(local.host).toBe("127.0.0.1");
    expect(local.port).not.toBe(target.port);
    expect(tunnel.local({ ...target })).toEqual(local);
    expect(() => tunnel.local({ host: "10.0.0.9", port: 5432 })).toThrow(/no tunnel to 10\.0\.0\.9:5432/);

    // The server only accepts SCRAM from 127.0.0.1, and the wrong password is refused through the tunnel too.
    const methods = await fleet.withAdmin(pg, "postgres", async (c) => (await c.query<{ auth_method: string }>("select distinct auth_method from pg_hba_file_rules where type = 'host'")).rows.map((r) => r.auth_method));
    expect(methods).toEqual(["scram-sha-256"]);
    await expect(connected(acmeVia(local, { password: "wrong" }))).rejects.toThrow(/password authentication failed for user "acme"/);

    const blobs = Array.from({ length: 32 }, () => randomBytes(256 * 1024)); // random: no compression anywhere flatters it
    const sent = Buffer.concat(blobs);
    const c = await connected(acmeVia(local));
    try {
      await c.query("create table blobs (id int primary key, body bytea not null)");
      for (const [i, b] of blobs.entries()) await c.query("insert into blobs values ($1, $2)", [i, b]);
      const back = await c.query<{ body: Buffer }>("select body from blobs order by id");
      const received = Buffer.concat(back.rows.map((r) => r.body));
      expect(received.length).toBe(8 * 1024 * 1024);
      expect(md5(received)).toBe(md5(sent));
    } finally {
      await c.end();
    }
    // The server computes the same md5 over what it stored (read directly, not through the tunnel).
    const onServer = await fleet.withAdmin(pg, acme.name, async (c) => (await c.query("select md5(string_agg(body, ''::bytea order by id)) as h from blobs")).rows[0].h);
    expect(onServer).toBe(md5(sent));

    // And the bytes really went through sshd: it opened direct-tcpip channels to the server's port.
    expect(await sshd.log()).toMatch(new RegExp(`server_request_direct_tcpip: originator 127\\.0\\.0\\.1 port \\d+, target ${target.host.replace(/\./g, "\\.")} port ${target.port}\\b`));
  });

  it("serves 8 concurrent clients over the one SSH connection, each with its own data", async () => {
    const n = 8;
    const clients = await Promise.all(Array.from({ length: n }, () => connected(acmeVia(tunnel.local(target)))));
    try {
      await clients[0]!.query("create table per_client (client int, seq int, body bytea not null, primary key (client, seq))");
      // All sessions are open at once on the server, each through its own channel.
      const pids = await Promise.all(clients.map(async (c) => (await c.query("select pg_backend_pid() as p")).rows[0].p as number));
      expect(new Set(pids).size).toBe(n);
      const live = await fleet.withAdmin(pg, "postgres", async (c) => Number((await c.query("select count(*) as n from pg_stat_activity where pid = any($1)", [pids])).rows[0].n));
      expect(live).toBe(n);

      const results = await Promise.all(
        clients.map(async (c, i) => {
          const mine = Array.from({ length: 4 }, () => randomBytes(128 * 1024));
          for (const [seq, b] of mine.entries()) await c.query("insert into per_client values ($1, $2, $3)", [i, seq, b]);
          const back = await c.query<{ body: Buffer }>("select body from per_client where client = $1 order by seq", [i]);
          return { sent: md5(Buffer.concat(mine)), received: md5(Buffer.concat(back.rows.map((r) => r.body))) };
        }),
      );
      for (const r of results) expect(r.received).toBe(r.sent);
      const rows = Number((await clients[n - 1]!.query("select count(*) as n from per_client")).rows[0].n);
      expect(rows).toBe(n * 4);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  });

  it("pg_dump, run as the migration engine runs it, dumps the database through the forwarded port", async () => {
    const local = tunnel.local(target);
    const file = path.join(scratch, "acme.dump");
    const { bytes } = await dumpDatabase({ name: "private-server", host: local.host, port: local.port, adminUser: pg.adminUser, adminPassword: pg.adminPassword }, acme.name, file);
    expect(bytes).toBeGreaterThan(8 * 1024 * 1024); // random bytes do not compress
    const { stdout: toc } = await run(await pgBinary("pg_restore"), ["--list", file]);
    expect(toc).toMatch(/TABLE public blobs acme/);
    expect(toc).toMatch(/TABLE DATA public blobs acme/);
    expect(toc).toMatch(/TABLE public per_client acme/);
  });
});

describe("failures name what failed", () => {
  it("refuses a bastion whose host key is not the expected one, naming both fingerprints", async () => {
    const loginsBefore = logins(await sshd.log());
    const other = await generateKeyPair(scratch, "not-the-bastion");
    const err = await openTunnel({ ...sshd, hostKeyFingerprint: other.fingerprint }, [target]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TunnelError);
    expect((err as TunnelError).kind).toBe("host-key");
    expect((err as TunnelError).message).toContain(`host key of SSH bastion 127.0.0.1:${sshd.port} does not match`);
    expect((err as TunnelError).message).toContain(`expected ${other.fingerprint}`);
    expect((err as TunnelError).message).toContain(`got ${sshd.hostKeyFingerprint}`);
    // The client stopped at the key exchange: nobody logged in.
    expect(logins(await sshd.log())).toBe(loginsBefore);
  });

  it("refuses a key the bastion does not authorise, naming user@host", async () => {
    const loginsBefore = logins(await sshd.log());
    const stranger = await generateKeyPair(scratch, "stranger");
    const err = await openTunnel({ ...sshd, privateKey: stranger.privateKey }, [target]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TunnelError);
    expect((err as TunnelError).kind).toBe("auth");
    expect((err as TunnelError).message).toContain(`refused authentication for ${sshd.username}@127.0.0.1`);
    expect(logins(await sshd.log())).toBe(loginsBefore);
  });

  it("says which bastion it cannot reach", async () => {
    const nobody = await freePort();
    const err = await openTunnel({ ...sshd, port: nobody }, [target]).catch((e: unknown) => e);
    expect((err as TunnelError).kind).toBe("unreachable");
    expect((err as TunnelError).message).toMatch(new RegExp(`cannot reach SSH bastion 127\\.0\\.0\\.1:${nobody}: .*ECONNREFUSED`));
  });

  it("a target the bastion cannot connect to fails that connection only; the tunnel keeps serving", async () => {
    const before = tunnelErrors.length;
    await expect(connected(acmeVia(tunnel.local(closedTarget), { connectionTimeoutMillis: 10_000 }))).rejects.toThrow(/terminated|ECONNRESET|closed/i);
    const forward = tunnelErrors.slice(before);
    expect(forward.map((e) => e.kind)).toEqual(["forward"]);
    expect(forward[0]!.message).toContain(`could not open a connection to 127.0.0.1:${closedTarget.port}`);
    expect(forward[0]!.message).toMatch(/Connection refused/i);

    const c = await connected(acmeVia(tunnel.local(target)));
    try {
      expect((await c.query("select count(*)::int as n from blobs")).rows[0].n).toBe(32);
    } finally {
      await c.end();
    }
  });

  it("when the bastion drops the SSH connection, the tunnel says so and new local connections end at once", async () => {
    const errors: TunnelError[] = [];
    const before = new Set(await sshd.connectionPids());
    const t = await openTunnel(sshd, [target], { onError: (e) => errors.push(e), keepaliveIntervalMs: 1_000 });
    try {
      const c = await connected(acmeVia(t.local(target)));
      const ended = new Promise<string>((resolve) => c.once("error", (e) => resolve(e.message)));
      // The sshd process serving this tunnel's connection: the bastion side going away.
      const mine = (await sshd.connectionPids()).filter((p) => !before.has(p));
      expect(mine).toHaveLength(1);
      process.kill(mine[0]!, "SIGTERM");

      expect(await ended).toMatch(/terminated unexpectedly/);
      await expect.poll(() => errors.map((e) => e.kind)).toContain("disconnected");
      expect(errors.find((e) => e.kind === "disconnected")!.message).toContain(`SSH connection to bastion 127.0.0.1:${sshd.port}`);
      const started = Date.now();
      await expect(connected(acmeVia(t.local(target), { connectionTimeoutMillis: 10_000 }))).rejects.toThrow(/terminated unexpectedly/);
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      await t.close();
    }
  });
});

describe("closing", () => {
  it("withTunnel without a bastion maps targets to themselves; with one it closes the tunnel afterwards", async () => {
    const direct = await withTunnel(undefined, [target], async (t) => {
      expect(t.local(target)).toEqual(target);
      const c = await connected(acmeVia(t.local(target)));
      try {
        return (await c.query("select count(*)::int as n from blobs")).rows[0].n as number;
      } finally {
        await c.end();
      }
    });
    expect(direct).toBe(32);

    let local: Endpoint | undefined;
    const through = await withTunnel(sshd, [target], async (t) => {
      local = t.local(target);
      const c = await connected(acmeVia(local));
      try {
        return (await c.query("select count(*)::int as n from per_client")).rows[0].n as number;
      } finally {
        await c.end();
      }
    });
    expect(through).toBe(32);
    expect(await connectOutcome(local!)).toBe("ECONNREFUSED");
  });

  it("close() ends live clients, frees the local port and can be called twice", async () => {
    const local = tunnel.local(target);
    const c = await connected(acmeVia(local));
    const ended = new Promise<string>((resolve) => c.once("error", (e) => resolve(e.message)));
    expect((await c.query("select 1 as one")).rows[0].one).toBe(1);

    await Promise.all([tunnel.close(), tunnel.close()]);
    await tunnel.close();

    expect(await ended).toMatch(/terminated unexpectedly/);
    expect(await connectOutcome(local)).toBe("ECONNREFUSED");
    // The server itself is still there, directly.
    const n = await fleet.withAdmin(pg, acme.name, async (a) => (await a.query("select count(*)::int as n from blobs")).rows[0].n);
    expect(n).toBe(32);
  });
});
