/**
 * The proxy's command line (proxy/config.ts) and the database names clients connect with
 * (proxy/catalog/routes.ts).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { clientDatabaseName, parseClientDatabaseName } from "../../proxy/catalog/routes";
import { ConfigError, parseProxyArgs } from "../../proxy/config";

const URL = "postgres://tenantfleet:pw@127.0.0.1:5432/tenantfleet_catalog";
const ENV = { TENANTFLEET_CATALOG_URL: URL };

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("parseProxyArgs", () => {
  const dir = mkdtempSync(join(tmpdir(), "tenantfleet-proxy-config-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("defaults: listen on 127.0.0.1:6432, admin on 127.0.0.1:9187, 60 s login timeout, 30 s shutdown grace, no advertise, no TLS; the catalog URL from the environment", () => {
    expect(parseProxyArgs(["--id", "proxy-1"], ENV)).toEqual({
      proxyId: "proxy-1",
      catalog: { connectionString: URL },
      listen: { host: "127.0.0.1", port: 6432 },
      admin: { host: "127.0.0.1", port: 9187 },
      loginTimeoutMs: 60_000,
      shutdownGraceMs: 30_000,
      poolQueueTimeoutMs: 30_000,
      poolIdleTimeoutMs: 600_000,
    });
  });

  it("reads the transaction pool's queue and idle timeouts in seconds and rejects nonsense", () => {
    const o = parseProxyArgs(["--id", "proxy-1", "--pool-queue-timeout", "0.5", "--pool-idle-timeout", "60"], ENV);
    expect([o.poolQueueTimeoutMs, o.poolIdleTimeoutMs]).toEqual([500, 60_000]);
    for (const bad of ["0", "soon", "", "86401"]) {
      expect(configError(() => parseProxyArgs(["--id", "proxy-1", `--pool-queue-timeout=${bad}`], ENV)).message).toMatch(/--pool-queue-timeout must be a number of seconds/);
    }
  });

  it("reads --shutdown-grace in seconds (0: close at once) and rejects negative, non-numbers and more than a day", () => {
    expect(parseProxyArgs(["--id", "proxy-1", "--shutdown-grace", "0"], ENV).shutdownGraceMs).toBe(0);
    expect(parseProxyArgs(["--id", "proxy-1", "--shutdown-grace", "12.5"], ENV).shutdownGraceMs).toBe(12_500);
    for (const bad of ["-1", "later", "", "86401"]) {
      const e = configError(() => parseProxyArgs(["--id", "proxy-1", `--shutdown-grace=${bad}`], ENV));
      expect(e.message).toBe(`--shutdown-grace must be a number of seconds from 0 to 86400, got "${bad}"`);
    }
  });

  it("reads --login-timeout in seconds and rejects zero, negative, non-numbers and more than a day", () => {
    expect(parseProxyArgs(["--id", "proxy-1", "--login-timeout", "2.5"], ENV).loginTimeoutMs).toBe(2500);
    expect(parseProxyArgs(["--id", "proxy-1", "--login-timeout", "86400"], ENV).loginTimeoutMs).toBe(86_400_000);
    // Node fires a timer longer than 2^31-1 ms after 1 ms: such values would drop every login.
    for (const bad of ["0", "-1", "soon", "", "86401", "3000000", "Infinity"]) {
      const e = configError(() => parseProxyArgs(["--id", "proxy-1", `--login-timeout=${bad}`], ENV));
      expect(e.message).toBe(`--login-timeout must be a number of seconds between 0 and 86400, got "${bad}"`);
    }
  });

  it("reads --redis-multiplex on|off (default on: no option set) and rejects anything else", () => {
    expect(parseProxyArgs(["--id", "p", "--redis-listen", "127.0.0.1:0"], ENV).redisMultiplex).toBeUndefined();
    expect(parseProxyArgs(["--id", "p", "--redis-listen", "127.0.0.1:0", "--redis-multiplex", "off"], ENV).redisMultiplex).toBe(false);
    expect(parseProxyArgs(["--id", "p", "--redis-multiplex", "on"], ENV).redisMultiplex).toBeUndefined();
    expect(configError(() => parseProxyArgs(["--id", "p", "--redis-multiplex", "maybe"], ENV)).message).toBe('--redis-multiplex must be on or off, got "maybe"');
  });

  it("reads --listen, --mysql-listen, --admin and --advertise (port 0 allowed: pick a free one)", () => {
    const o = parseProxyArgs(["--id", "p2", "--listen", "0.0.0.0:0", "--mysql-listen", "0.0.0.0:3306", "--admin=localhost:9999", "--advertise", "proxy-2.internal:6432"], ENV);
    expect(o.listen).toEqual({ host: "0.0.0.0", port: 0 });
    expect(o.mysqlListen).toEqual({ host: "0.0.0.0", port: 3306 });
    expect(o.admin).toEqual({ host: "localhost", port: 9999 });
    expect(o.advertise).toEqual({ host: "proxy-2.internal", port: 6432 });
  });

  it("lists a missing --id and a missing TENANTFLEET_CATALOG_URL together in one ConfigError", () => {
    const e = configError(() => parseProxyArgs([], {}));
    expect(e.message.split("\n")).toEqual([
      "--id is required: lower-case letters, digits and dashes (e.g. proxy-1)",
      "TENANTFLEET_CATALOG_URL is not set: the proxy needs the control catalog",
    ]);
    // …and the TLS pairing problem joins the same list.
    const all = configError(() => parseProxyArgs(["--tls-key", "k.pem"], { TENANTFLEET_CATALOG_URL: "" }));
    expect(all.message.split("\n")).toHaveLength(3);
    expect(all.message).toContain("--tls-cert and --tls-key go together");
  });

  it.each(["Proxy-1", "proxy_1", "-proxy", "p".repeat(64)])("rejects the id %j", (id) => {
    expect(configError(() => parseProxyArgs([`--id=${id}`], ENV)).message).toMatch(/^--id is required/);
  });

  it("does not take the catalog URL (it carries a password) from argv", () => {
    expect(() => parseProxyArgs(["--id", "proxy-1", "--catalog-url", URL], ENV)).toThrow(/--catalog-url/);
  });

  it.each([
    ["--listen", "6432"],
    ["--listen", ":6432"],
    ["--listen", "localhost:"],
    ["--listen", "localhost:65536"],
    ["--admin", "localhost:-1"],
    ["--advertise", "localhost:http"],
    ["--mysql-listen", "3306"],
  ])("rejects %s %j as not host:port", (flag, value) => {
    const e = configError(() => parseProxyArgs(["--id", "proxy-1", flag, value], ENV));
    expect(e.message).toBe(`${flag} must be host:port (port 0 picks a free one), got "${value}"`);
  });

  it("takes an IPv6 address in brackets and gives it bare, as listen() needs it", async () => {
    const o = parseProxyArgs(["--id", "proxy-1", "--listen", "[::1]:0", "--advertise", "[fd00::7]:6432"], ENV);
    expect(o.listen).toEqual({ host: "::1", port: 0 });
    expect(o.advertise).toEqual({ host: "fd00::7", port: 6432 });
    // The parsed host really is listenable (where the machine has IPv6 loopback at all).
    const server = net.createServer();
    const bound = await new Promise<string>((resolve) => {
      server.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
      server.listen(o.listen.port, o.listen.host, () => resolve("listening"));
    });
    server.close();
    expect(["listening", "EADDRNOTAVAIL", "EAFNOSUPPORT"]).toContain(bound);
    expect(bound).not.toBe("ENOTFOUND");
  });

  it("rejects --tls-cert without --tls-key (and the reverse)", () => {
    expect(configError(() => parseProxyArgs(["--id", "proxy-1", "--tls-cert", "cert.pem"], ENV)).message).toBe("--tls-cert and --tls-key go together");
    expect(configError(() => parseProxyArgs(["--id", "proxy-1", "--tls-key", "key.pem"], ENV)).message).toBe("--tls-cert and --tls-key go together");
  });

  it("reads the TLS certificate and key files, and names the problem when one is missing", () => {
    const cert = join(dir, "cert.pem");
    const key = join(dir, "key.pem");
    writeFileSync(cert, "-----BEGIN CERTIFICATE-----\nstub\n");
    writeFileSync(key, "-----BEGIN PRIVATE KEY-----\nstub\n");
    const o = parseProxyArgs(["--id", "proxy-1", "--tls-cert", cert, "--tls-key", key], ENV);
    expect(o.tls!.cert.toString()).toContain("BEGIN CERTIFICATE");
    expect(o.tls!.key.toString()).toContain("BEGIN PRIVATE KEY");
    const e = configError(() => parseProxyArgs(["--id", "proxy-1", "--tls-cert", cert, "--tls-key", join(dir, "missing.pem")], ENV));
    expect(e.message).toMatch(/^cannot read the TLS certificate or key: .*missing\.pem/);
  });
});

describe("client database names: <database>__<tenant>", () => {
  it("splits app__acme into database app, tenant acme, and clientDatabaseName joins it back", () => {
    expect(parseClientDatabaseName("app__acme")).toEqual({ database: "app", tenant: "acme" });
    expect(clientDatabaseName({ database: "app", tenant: "acme" })).toBe("app__acme");
  });

  it("allows single underscores and digits on both sides", () => {
    expect(parseClientDatabaseName("app_v2__acme_corp9")).toEqual({ database: "app_v2", tenant: "acme_corp9" });
  });

  it.each(["app", "__acme", "app__", "App__acme", "app__Acme", "a__b__c", "1app__acme", "app__acme-1", "app__acme ", ""])("rejects %j", (name) => {
    expect(parseClientDatabaseName(name)).toBeUndefined();
  });

  it("round-trips every valid identifier pair, including ones the lazy split could get wrong", () => {
    // Valid stack identifiers: lower-case letter first, single underscores, no trailing "_".
    const names = ["a", "app", "app_v2", "a_b_c", "x9", "billing_2024"];
    for (const database of names) {
      for (const tenant of names) {
        expect(parseClientDatabaseName(clientDatabaseName({ database, tenant }))).toEqual({ database, tenant });
      }
    }
  });
});
