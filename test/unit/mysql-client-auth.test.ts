/**
 * The proxy's MySQL connection phase (proxy/mysql/client-auth.ts) against real clients: mysql2 and
 * the `mariadb` CLI (also as a MySQL 8 client starting with caching_sha2_password). The harness
 * below is only the socket around ClientAuth: it answers every command after the login with OK.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import * as net from "node:net";
import { createConnection } from "mysql2/promise";
import { ClientAuth, type MysqlLogin } from "../../proxy/mysql/client-auth";
import { COM } from "../../proxy/mysql/codes";
import { encodeOk } from "../../proxy/mysql/handshake";
import { nativeVerifier } from "../../proxy/mysql/native-password";
import { LogicalPacket, PacketScanner, encodePacket } from "../../proxy/mysql/packets";

const logins: Record<string, { password: string; database: string }> = {
  shop__acme: { password: "acme-pw", database: "shop__acme" },
  shop__globex: { password: "globex-pw", database: "shop__globex" },
};
const outcomes: Array<{ kind: string; reason?: string; user?: string; database?: string; sha1?: string }> = [];

let server: net.Server;
let port: number;

beforeAll(async () => {
  let ids = 100;
  server = net.createServer((socket) => {
    const auth = new ClientAuth({
      serverVersion: "10.11.6-MariaDB-tenantfleet",
      connectionId: ids++,
      login: (user): MysqlLogin | undefined => (logins[user] ? { verifier: nativeVerifier(logins[user]!.password), database: logins[user]!.database } : undefined),
      databaseExists: (name) => Object.values(logins).some((l) => l.database === name),
      clientHost: "127.0.0.1",
    });
    const send = (seq: number, payload: Buffer) => socket.write(encodePacket(seq, payload).bytes);
    let authed = false;
    const join = new LogicalPacket();
    const scanner = new PacketScanner((p) => {
      const whole = join.add(p);
      if (!whole) return;
      if (!authed) {
        const step = auth.receive(whole, p.seq);
        if (step.kind === "send") send(step.seq, step.payload);
        else if (step.kind === "refuse") {
          outcomes.push({ kind: "refuse", reason: step.reason });
          send(step.seq, step.payload);
          socket.end();
        } else if (step.kind === "authenticated") {
          authed = true;
          outcomes.push({ kind: "ok", user: step.user, database: step.database, sha1: step.passwordSha1.toString("hex") });
          send(step.seq, encodeOk({ status: 0x0002 }));
        }
        return;
      }
      if (whole[0] === COM.QUIT) return void socket.end();
      send(1, encodeOk({ status: 0x0002 }));
    });
    socket.on("data", (c) => scanner.feed(c));
    socket.on("error", () => undefined);
    const g = auth.greet();
    if (g.kind === "send") send(g.seq, g.payload);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as net.AddressInfo).port;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

const sha1hex = (s: string) => createHash("sha1").update(s).digest("hex");

function cli(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile("mariadb", ["-h", "127.0.0.1", "-P", String(port), "--protocol=TCP", "--skip-ssl", ...args], { timeout: 20_000 }, (err, _stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
    );
  });
}

describe("the MySQL connection phase, terminated in the proxy", () => {
  it("mysql2 logs in with mysql_native_password; the proxy recovers SHA1(password) and nothing else", async () => {
    const c = await createConnection({ host: "127.0.0.1", port, user: "shop__acme", password: "acme-pw", database: "shop__acme" });
    await c.ping();
    await c.end();
    expect(outcomes.at(-1)).toEqual({ kind: "ok", user: "shop__acme", database: "shop__acme", sha1: sha1hex("acme-pw") });
  });

  it("a login without a database gets its own tenant database", async () => {
    const c = await createConnection({ host: "127.0.0.1", port, user: "shop__globex", password: "globex-pw" });
    await c.end();
    expect(outcomes.at(-1)).toMatchObject({ kind: "ok", database: "shop__globex" });
  });

  it("refuses with MySQL's codes: 1045 for a wrong password or an unknown login (same message shape), 1044 for another tenant's database, 1049 for an unknown one", async () => {
    const refused = async (o: { user: string; password: string; database?: string }) => {
      const e = (await createConnection({ host: "127.0.0.1", port, ...o }).catch((x: unknown) => x)) as { errno?: number; sqlState?: string; message?: string };
      return { errno: e.errno, sqlState: e.sqlState, message: e.message };
    };
    expect(await refused({ user: "shop__acme", password: "wrong" })).toEqual({ errno: 1045, sqlState: "28000", message: "Access denied for user 'shop__acme'@'127.0.0.1' (using password: YES)" });
    expect(await refused({ user: "shop__nobody", password: "x" })).toEqual({ errno: 1045, sqlState: "28000", message: "Access denied for user 'shop__nobody'@'127.0.0.1' (using password: YES)" });
    expect(await refused({ user: "shop__acme", password: "acme-pw", database: "shop__globex" })).toEqual({
      errno: 1044,
      sqlState: "42000",
      message: "Access denied for user 'shop__acme'@'127.0.0.1' to database 'shop__globex'",
    });
    expect(await refused({ user: "shop__acme", password: "acme-pw", database: "shop__ghost" })).toEqual({ errno: 1049, sqlState: "42000", message: "Unknown database 'shop__ghost'" });
    // Another tenant's password does not open this tenant's login.
    expect((await refused({ user: "shop__acme", password: "globex-pw" })).errno).toBe(1045);
  });

  it("the mariadb CLI logs in, and prints the refusal", async () => {
    expect(await cli(["-u", "shop__acme", "-pacme-pw", "shop__acme", "-e", "do 1"])).toEqual({ code: 0, stderr: "" });
    const bad = await cli(["-u", "shop__acme", "-pnope", "shop__acme", "-e", "do 1"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("ERROR 1045 (28000): Access denied for user 'shop__acme'@'127.0.0.1' (using password: YES)");
  });

  it("a client that starts with caching_sha2_password (MySQL 8's default) is switched to native and logs in", async () => {
    const before = outcomes.length;
    expect(await cli(["--default-auth=caching_sha2_password", "-u", "shop__acme", "-pacme-pw", "shop__acme", "-e", "do 1"])).toEqual({ code: 0, stderr: "" });
    expect(outcomes.slice(before)).toEqual([{ kind: "ok", user: "shop__acme", database: "shop__acme", sha1: sha1hex("acme-pw") }]);
    const bad = await cli(["--default-auth=caching_sha2_password", "-u", "shop__acme", "-pnope", "shop__acme", "-e", "do 1"]);
    expect(bad.stderr).toContain("ERROR 1045 (28000)");
  });
});
