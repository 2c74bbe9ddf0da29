/**
 * The user-data a cloud database VM boots with (components/platforms/vm/cloud-init.ts), checked as
 * cloud-init reads it and then run for real: the configuration script is taken out of the rendered
 * document's write_files (not rendered again) and run with bash against real servers on this
 * machine, through the environment overrides configure.ts documents for off-VM runs.
 *
 * - PostgreSQL: a Debian cluster of our own (`pg_createcluster`, the layout a VM has, with conf.d),
 *   so the script touches only that cluster's files.
 * - Redis and MariaDB: their scripts write fixed paths (/etc/redis, /etc/mysql, /var/lib/...) and
 *   restart through the init script (`service`, there is no systemd here). They run inside an
 *   isolated "VM view" (IsolatedRoot below): a new mount namespace where temp dirs are bound over
 *   every path the script and the init script write, and a new PID namespace, so the init scripts'
 *   process matching (start-stop-daemon, `killall mariadbd` as a last resort) only ever sees the
 *   servers started inside. Killing the namespace's init kills everything in it.
 *
 * As on a VM, the servers are not running before the first run (a VM's package server runs then,
 * with the package's config); the second run, which must be idempotent, restarts a running server.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, chownSync, closeSync, cpSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client, type ClientConfig } from "pg";
import Redis from "ioredis";
import * as mysql from "mysql2/promise";
import { ADMIN_PASSWORD_FILE, CONFIGURE_PATH, VM_PACKAGES, type ConfigureInput } from "../../components/platforms/vm/configure";
import { awsSecretFetch, serverUserData } from "../../components/platforms/vm/cloud-init";
import { REDIS_INSTANCES_PATH } from "../../components/platforms/vm/redis-instances";
import { postgresSettings } from "../../dynamic-providers/engines/postgres/settings";
import { BASE_PORTS, releasePort, reservePort } from "../../dynamic-providers/local-server/ports";
import { run, waitFor } from "../../dynamic-providers/local-server/process";

const ADMIN = "tfadmin";
const SERVER_ID = 4242;
const PG_VERSION = "15"; // Debian 12's PostgreSQL (scripts/lib/system-packages.ts)

/** A password a shell or SQL quoting slip would break: quotes, `$`, backslash, backtick, spaces. */
const password = (): string => `it's $HOME \\ "q" \`id\` ${randomBytes(6).toString("hex")}`;

const secretFetch = awsSecretFetch("arn:aws:secretsmanager:eu-west-1:123456789012:secret:tenantfleet/admin-AbCdEf", "eu-west-1");

interface CloudConfig {
  package_update: boolean;
  packages: string[];
  write_files: { path: string; permissions: string; owner: string; content: string }[];
  runcmd: string[][];
}

interface RenderedUserData {
  text: string;
  doc: CloudConfig;
  /** The configuration script, as cloud-init writes it to CONFIGURE_PATH. */
  script: string;
}

/** Render a server's user-data and read it back the way cloud-init does. */
function renderUserData(input: ConfigureInput): RenderedUserData {
  const text = serverUserData(input, secretFetch);
  const [first, ...rest] = text.split("\n");
  expect(first).toBe("#cloud-config");
  const doc = JSON.parse(rest.join("\n")) as CloudConfig;
  const file = doc.write_files.find((f) => f.path === CONFIGURE_PATH);
  if (!file) throw new Error(`no ${CONFIGURE_PATH} in write_files`);
  return { text, doc, script: file.content };
}

/** The structure cloud-init needs to install the engine, write the script and run it after the
 * admin secret is on tmpfs. */
function expectServerCloudConfig(u: RenderedUserData, input: ConfigureInput): void {
  const { doc } = u;
  expect(doc.package_update).toBe(true);
  for (const p of [...VM_PACKAGES[input.engine], ...secretFetch.packages]) expect(doc.packages).toContain(p);
  expect(doc.packages).toContain({ postgres: "postgresql", mysql: "mariadb-server", redis: "redis-server", mongodb: "" }[input.engine]);
  expect(doc.write_files).toHaveLength(1);
  expect(doc.write_files[0]).toMatchObject({ path: CONFIGURE_PATH, permissions: "0700", owner: "root:root" });
  expect(u.script.startsWith("#!/bin/bash\n")).toBe(true);
  expect(doc.runcmd).toHaveLength(1);
  const [shell, flag, cmd] = doc.runcmd[0]!;
  expect([shell, flag]).toEqual(["bash", "-c"]);
  // The secret lands in the password file first, and the script runs only if that worked.
  const fetchAt = cmd!.indexOf(secretFetch.command);
  const fileAt = cmd!.indexOf(`> ${ADMIN_PASSWORD_FILE}`);
  const scriptAt = cmd!.lastIndexOf(`&& ${CONFIGURE_PATH}`);
  expect(fetchAt).toBeGreaterThanOrEqual(0);
  expect(fileAt).toBeGreaterThan(fetchAt);
  expect(scriptAt).toBeGreaterThan(fileAt);
  expect(cmd!.endsWith(CONFIGURE_PATH)).toBe(true);
}

interface RunResult {
  code: number | null;
  output: string;
}

/**
 * Run a command, stdout and stderr to a file (servers the command starts may keep inherited
 * descriptors open, so we wait for the exit, not for EOF). Never throws on a non-zero exit.
 */
function runLogged(cmd: string, args: string[], env: NodeJS.ProcessEnv, logFile: string, timeoutMs = 120_000): Promise<RunResult> {
  const fd = openSync(logFile, "w");
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ["ignore", fd, fd] });
    closeSync(fd);
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", (err) => (clearTimeout(timer), reject(err)));
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      const output = readFileSync(logFile, "utf8");
      resolve({ code: signal ? null : code, output: signal ? `${output}\n(killed by ${signal} after ${timeoutMs} ms)` : output });
    });
  });
}

/** The environment a configure run gets: the documented off-VM overrides. */
const scriptEnv = (extra: Record<string, string>): NodeJS.ProcessEnv => ({ ...process.env, TF_EXTRA_CLIENT_CIDR: "127.0.0.1/32", ...extra });

/** Write the extracted script and the password file (as cloud-init would: script 0700, the secret
 * without a trailing newline, 0600). */
function stage(dir: string, script: string, pw: string): { scriptFile: string; passwordFile: string } {
  const scriptFile = path.join(dir, "tenantfleet-configure");
  writeFileSync(scriptFile, script, { mode: 0o700 });
  const passwordFile = path.join(dir, "admin-password");
  writeFileSync(passwordFile, pw, { mode: 0o600 });
  return { scriptFile, passwordFile };
}

/**
 * A private filesystem view and process table for one engine's configuration step: `binds` maps a
 * path on this machine (target) to a temp dir bound over it (source) inside the namespace only.
 * `unshare` makes the namespaces; its pid 1 is `sleep`, and commands join with `nsenter`.
 */
class IsolatedRoot {
  private constructor(
    private readonly unsharePid: number,
    /** pid 1 of the namespace, as this machine sees it. */
    readonly initPid: number,
  ) {}

  static async start(binds: [target: string, source: string][]): Promise<IsolatedRoot> {
    const setup = 'set -e; while [ $# -gt 0 ]; do mount --bind "$2" "$1"; shift 2; done; echo ready; exec sleep infinity';
    // --kill-child: should unshare die (a killed test worker), the namespace's init dies with it.
    const args = ["--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private", "--kill-child=SIGKILL"];
    const child = spawn("unshare", [...args, "bash", "-c", setup, "tf-vm", ...binds.flat()], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (d: Buffer) => d.toString().includes("ready") && resolve());
      child.once("exit", (code) => reject(new Error(`unshare exited (${code}) before the namespace was ready: ${err.trim()}`)));
    });
    const pid = child.pid!;
    const initPid = Number(readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/)[0]);
    if (!initPid) throw new Error("could not find the namespace's init process");
    return new IsolatedRoot(pid, initPid);
  }

  exec(cmd: string, args: string[], env: NodeJS.ProcessEnv, logFile: string, timeoutMs?: number): Promise<RunResult> {
    return runLogged("nsenter", ["--target", String(this.initPid), "--mount", "--pid", "--", cmd, ...args], env, logFile, timeoutMs);
  }

  /** Kill the namespace's init: the kernel kills every process left inside, and the mounts go. */
  async stop(): Promise<void> {
    try {
      process.kill(this.initPid, "SIGKILL");
    } catch {
      /* already gone */
    }
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(this.unsharePid, 0);
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** A temp dir that an unprivileged server account may use. */
function ownedDir(parent: string, name: string, owner: string, mode = 0o755): string {
  const dir = path.join(parent, name);
  mkdirSync(dir, { recursive: true });
  const [user, group] = owner.split(":");
  chownSync(dir, uid(user!), gid(group ?? user!));
  chmodSync(dir, mode);
  return dir;
}

const uid = (user: string): number => Number(readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith(`${user}:`))!.split(":")[2]);
const gid = (group: string): number => Number(readFileSync("/etc/group", "utf8").split("\n").find((l) => l.startsWith(`${group}:`))!.split(":")[2]);

const sha256 = (s: string): string => createHash("sha256").update(s).digest("hex");

// ---------------------------------------------------------------------------------------------

describe("PostgreSQL VM user-data", () => {
  const input: ConfigureInput = { engine: "postgres", adminUser: ADMIN, clientCidrs: ["10.20.0.0/16"], role: "shared", serverId: SERVER_ID };
  const cluster = `tfvm${process.pid}`;
  const adminPassword = password();
  let scratch: string;
  let port: number;
  let userData: RenderedUserData;
  let files: { scriptFile: string; passwordFile: string };
  let firstRun: RunResult;
  let created = false;

  const admin = (extra: Partial<ClientConfig> = {}): ClientConfig => ({
    host: "127.0.0.1",
    port,
    user: ADMIN,
    password: adminPassword,
    database: "postgres",
    ssl: { rejectUnauthorized: false },
    ...extra,
  });
  async function query<T>(sql: string, cfg = admin()): Promise<T[]> {
    const c = new Client(cfg);
    await c.connect();
    try {
      return (await c.query(sql)).rows as T[];
    } finally {
      await c.end();
    }
  }
  const configure = (log: string): Promise<RunResult> =>
    runLogged(
      "bash",
      [files.scriptFile],
      scriptEnv({ TF_PG_CLUSTER: cluster, TF_PG_VERSION: PG_VERSION, TF_PORT: String(port), TF_ADMIN_PASSWORD_FILE: files.passwordFile }),
      path.join(scratch, log),
    );

  beforeAll(async () => {
    scratch = mkdtempSync(path.join(os.tmpdir(), "tf-vm-pg-"));
    chmodSync(scratch, 0o755); // the postgres account reaches its data dir inside
    port = await reservePort(BASE_PORTS.postgres, scratch);
    userData = renderUserData(input);
    files = stage(scratch, userData.script, adminPassword);
    // What the postgresql package leaves on a VM: a Debian cluster, running, with conf.d.
    await run("pg_createcluster", [PG_VERSION, cluster, "-p", String(port), "-d", path.join(scratch, "data")]);
    created = true;
    await run("pg_ctlcluster", [PG_VERSION, cluster, "start"]);
    firstRun = await configure("configure-1.log");
  });

  afterAll(async () => {
    if (created) {
      await run("pg_dropcluster", ["--stop", PG_VERSION, cluster]).catch((e) => console.error(String(e)));
      // pg_dropcluster leaves the config dir when it holds files it does not know (our conf.d and
      // certificate); the cluster name is ours alone.
      rmSync(`/etc/postgresql/${PG_VERSION}/${cluster}`, { recursive: true, force: true });
    }
    if (scratch) {
      await releasePort(port, scratch);
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it("renders cloud-config that installs PostgreSQL and runs the script after fetching the secret, without the password", () => {
    expectServerCloudConfig(userData, input);
    expect(userData.text).not.toContain(adminPassword);
    expect(userData.script).toContain("pg_ctlcluster");
  });

  it("configures the cluster: the extracted script exits 0", () => {
    expect(firstRun.output).toContain(`PostgreSQL ${PG_VERSION}/${cluster} configured`);
    expect(firstRun.code, firstRun.output).toBe(0);
    expect(firstRun.output).not.toContain(adminPassword);
  });

  it("sets what migrations need: logical WAL, replication slots and senders, SCRAM", async () => {
    const expected = postgresSettings({ port, listenAddresses: "*" });
    const [row] = await query<Record<string, string>>(
      "SELECT current_setting('wal_level') AS wal_level, current_setting('max_replication_slots') AS slots, current_setting('max_wal_senders') AS senders, current_setting('password_encryption') AS enc, current_setting('port') AS port",
    );
    expect(row).toEqual({
      wal_level: "logical",
      slots: String(expected.max_replication_slots),
      senders: String(expected.max_wal_senders),
      enc: "scram-sha-256",
      port: String(port),
    });
  });

  // Servers offer TLS but do not require it yet (README "Cloud platforms", limits): only that TLS
  // is offered and works is asserted, not that plain connections are refused.
  it("serves TLS with the certificate made on the server", async () => {
    const [row] = await query<{ ssl: string; tls: boolean; cert: string }>(
      "SELECT current_setting('ssl') AS ssl, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS tls, current_setting('ssl_cert_file') AS cert",
    );
    expect(row).toEqual({ ssl: "on", tls: true, cert: `/etc/postgresql/${PG_VERSION}/${cluster}/tenantfleet-server.crt` });
  });

  it("creates the admin role as a SCRAM superuser with replication; a wrong password is refused", async () => {
    const [role] = await query<{ rolsuper: boolean; rolreplication: boolean; rolcanlogin: boolean; scram: boolean }>(
      `SELECT rolsuper, rolreplication, rolcanlogin, rolpassword LIKE 'SCRAM-SHA-256$%' AS scram FROM pg_authid WHERE rolname = '${ADMIN}'`,
    );
    expect(role).toEqual({ rolsuper: true, rolreplication: true, rolcanlogin: true, scram: true });
    await expect(query("SELECT 1", admin({ password: `${adminPassword}x` }))).rejects.toMatchObject({ code: "28P01" });
  });

  it("is idempotent: a second run exits 0, keeps the certificate, and the admin still logs in", async () => {
    const certFile = `/etc/postgresql/${PG_VERSION}/${cluster}/tenantfleet-server.crt`;
    const cert = readFileSync(certFile, "utf8");
    const second = await configure("configure-2.log");
    expect(second.code, second.output).toBe(0);
    expect(readFileSync(certFile, "utf8")).toBe(cert);
    const [row] = await query<{ wal_level: string; n: string }>(`SELECT current_setting('wal_level') AS wal_level, count(*)::text AS n FROM pg_roles WHERE rolname = '${ADMIN}'`);
    expect(row).toEqual({ wal_level: "logical", n: "1" });
  });
});

// ---------------------------------------------------------------------------------------------

describe("Redis VM user-data (in an isolated filesystem view)", () => {
  const input: ConfigureInput = { engine: "redis", adminUser: ADMIN, clientCidrs: ["10.20.0.0/16"], role: "shared", serverId: SERVER_ID };
  const adminPassword = password();
  let scratch: string;
  let etc: string;
  let port: number;
  let vm: IsolatedRoot | undefined;
  let userData: RenderedUserData;
  let files: { scriptFile: string; passwordFile: string };
  let firstRun: RunResult;
  let runId: string;
  const clients: Redis[] = [];
  const instancePorts: number[] = [];

  const connect = (opts: { username?: string; password?: string; protocol?: 2 | 3 } = {}): Redis => {
    // No ready check: its INFO fails with NOAUTH before a client has logged in.
    const c = new Redis({ host: "127.0.0.1", port, lazyConnect: true, enableReadyCheck: false, maxRetriesPerRequest: 0, retryStrategy: () => null, ...opts });
    c.on("error", () => {});
    clients.push(c);
    return c;
  };
  /** Run the script; then, as a VM's systemd unit (Type=notify) would before reporting the start,
   * wait until the server answers: without systemd the init script returns once redis-server has
   * daemonised, before it listens. */
  async function configure(log: string): Promise<RunResult> {
    const result = await vm!.exec("bash", [files.scriptFile], scriptEnv({ TF_PORT: String(port), TF_ADMIN_PASSWORD_FILE: files.passwordFile }), path.join(scratch, log));
    if (result.code !== 0) return result;
    const probe = async (): Promise<boolean> => {
      const c = new Redis({ host: "127.0.0.1", port, username: ADMIN, password: adminPassword, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      c.on("error", () => {});
      try {
        await c.connect();
        return (await c.ping()) === "PONG";
      } finally {
        c.disconnect();
      }
    };
    await waitFor(`Redis on port ${port}`, probe, { timeoutMs: 15_000, logFile: path.join(scratch, "var-log", "redis", "redis-server.log") });
    return result;
  }

  beforeAll(async () => {
    scratch = mkdtempSync(path.join(os.tmpdir(), "tf-vm-redis-"));
    chmodSync(scratch, 0o755);
    port = await reservePort(BASE_PORTS.redis, scratch);
    userData = renderUserData(input);
    files = stage(scratch, userData.script, adminPassword);
    // The package's files, as on a fresh VM, in dirs of our own.
    etc = path.join(scratch, "etc-redis");
    cpSync("/etc/redis", etc, { recursive: true, preserveTimestamps: true });
    chownSync(etc, uid("redis"), gid("redis"));
    const log = ownedDir(scratch, "var-log", "root:root");
    ownedDir(log, "redis", "redis:adm", 0o2750);
    vm = await IsolatedRoot.start([
      ["/etc/redis", etc],
      ["/var/lib/redis", ownedDir(scratch, "var-lib-redis", "redis:redis", 0o750)],
      ["/var/log", log],
      ["/run", ownedDir(scratch, "run", "root:root")],
    ]);
    firstRun = await configure("configure-1.log");
  });

  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await vm?.stop();
    if (scratch) {
      await releasePort(port, scratch);
      for (const [i, p] of instancePorts.entries()) await releasePort(p, path.join(scratch, `instance-${i}.port`));
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it("renders cloud-config that installs Redis and runs the script after fetching the secret, without the password", () => {
    expectServerCloudConfig(userData, input);
    expect(userData.text).not.toContain(adminPassword);
  });

  it("configures and restarts Redis: the extracted script exits 0", () => {
    expect(firstRun.code, firstRun.output).toBe(0);
    expect(firstRun.output).toContain("Redis configured");
  });

  it("keeps only the password's SHA-256, computed on the VM, in users.acl", () => {
    const acl = readFileSync(path.join(etc, "users.acl"), "utf8");
    expect(acl).toContain(`user ${ADMIN} on #${sha256(adminPassword)} `);
    expect(acl).toContain("user default off");
    expect(acl).not.toContain(adminPassword);
    expect(readFileSync(path.join(etc, "redis.conf"), "utf8")).not.toContain(adminPassword);
  });

  it("turns the default user off and refuses a wrong admin password", async () => {
    // RESP2: ioredis's RESP3 handshake (HELLO) needs credentials, and would close the connection.
    const anon = connect({ protocol: 2 });
    await anon.connect();
    await expect(anon.ping()).rejects.toThrow(/NOAUTH/);
    await expect(anon.call("AUTH", "default", "")).rejects.toThrow(/WRONGPASS/);
    await expect(anon.call("AUTH", ADMIN, `${adminPassword}x`)).rejects.toThrow(/WRONGPASS/);
    await expect(anon.ping()).rejects.toThrow(/NOAUTH/);
  });

  it("lets the admin user in with the password, with AOF on", async () => {
    const c = connect({ username: ADMIN, password: adminPassword });
    await c.connect();
    expect(await c.call("ACL", "WHOAMI")).toBe(ADMIN);
    expect(await c.config("GET", "appendonly")).toEqual(["appendonly", "yes"]);
    expect(await c.config("GET", "port")).toEqual(["port", String(port)]);
    await c.set("tf:durable", "before-restart");
    runId = (await c.info("server")).match(/run_id:(\w+)/)![1]!;
  });

  it("is idempotent: a second run restarts the server, exits 0, and AOF kept the data", async () => {
    const second = await configure("configure-2.log");
    expect(second.code, second.output).toBe(0);
    const c = connect({ username: ADMIN, password: adminPassword });
    await c.connect();
    expect(await c.get("tf:durable")).toBe("before-restart");
    expect((await c.info("server")).match(/run_id:(\w+)/)![1]).not.toBe(runId); // a new server process
  });

  // A shared host's tenant database instances (components/platforms/vm/redis-instances.ts): the
  // converging step taken out of a shared host's user-data and run on two manifests in turn.
  describe("a shared host's instances, from the manifest it pulls", () => {
    const names = ["shared-redis-eu-west--acme-cache", "shared-redis-eu-west--globex-queue"];
    let script: string;
    const instance = (p: number, opts: { username?: string; password?: string } = { username: ADMIN, password: adminPassword }): Redis => {
      const c = new Redis({ host: "127.0.0.1", port: p, lazyConnect: true, enableReadyCheck: false, maxRetriesPerRequest: 0, retryStrategy: () => null, protocol: 2, ...opts });
      c.on("error", () => {});
      clients.push(c);
      return c;
    };
    const serving = (p: number) => waitFor(`instance on port ${p}`, async () => {
      const c = instance(p);
      try {
        await c.connect();
        return (await c.ping()) === "PONG";
      } finally {
        c.disconnect();
      }
    }, { timeoutMs: 15_000 });
    /** Converge on `lines` (`name port maxmemoryMb`), as the host's timer does with what it pulled. */
    async function converge(lines: string[], log: string): Promise<RunResult> {
      const manifest = path.join(scratch, `${log}.manifest`);
      writeFileSync(manifest, `# tenantfleet Redis instances of shared-redis-eu-west\n${lines.join("\n")}\n`);
      const scriptFile = path.join(scratch, "tenantfleet-redis-instances");
      writeFileSync(scriptFile, script, { mode: 0o700 });
      return vm!.exec("bash", [scriptFile, manifest], scriptEnv({ TF_ADMIN_PASSWORD_FILE: files.passwordFile }), path.join(scratch, log));
    }
    const runIdOf = async (c: Redis) => (await c.info("server")).match(/run_id:(\w+)/)![1]!;

    beforeAll(async () => {
      const text = serverUserData(input, secretFetch, { fetchManifest: { packages: [], command: "cat /run/manifest" } });
      const doc = JSON.parse(text.slice("#cloud-config\n".length)) as CloudConfig;
      script = doc.write_files.find((f) => f.path === REDIS_INSTANCES_PATH)!.content;
      // One owner per reservation (a reservation's owner must exist, and one owner holds one port).
      for (let i = 0; i < 2; i++) {
        writeFileSync(path.join(scratch, `instance-${i}.port`), "");
        instancePorts.push(await reservePort(BASE_PORTS.redis, path.join(scratch, `instance-${i}.port`)));
      }
    });

    it("starts each instance listed: the host's admin password, the default user off, its own maxmemory, AOF and data dir", async () => {
      const first = await converge([`${names[0]} ${instancePorts[0]} 64`, `${names[1]} ${instancePorts[1]} 128`], "instances-1.log");
      expect(first.code, first.output).toBe(0);
      expect(first.output).toContain(`${names[0]}: started on port ${instancePorts[0]} (maxmemory 64 MB)`);
      expect(first.output).not.toContain(adminPassword);
      for (const [i, mb] of [[0, 64], [1, 128]] as const) {
        await serving(instancePorts[i]!);
        const c = instance(instancePorts[i]!);
        await c.connect();
        expect(await c.config("GET", "maxmemory")).toEqual(["maxmemory", String(mb * 1024 * 1024)]);
        expect(await c.config("GET", "appendonly")).toEqual(["appendonly", "yes"]);
        expect(await c.config("GET", "dir")).toEqual(["dir", `/var/lib/redis/instances/${names[i]}`]);
        const anon = instance(instancePorts[i]!, {});
        await anon.connect();
        await expect(anon.ping()).rejects.toThrow(/NOAUTH/);
      }
      const acl = readFileSync(path.join(etc, "instances", `${names[0]}.acl`), "utf8");
      expect(acl).toContain(`user ${ADMIN} on #${sha256(adminPassword)} `);
      expect(acl).not.toContain(adminPassword);
    });

    it("a second manifest: a changed maxmemory applied live (same process, the tenant's user kept), a removed instance stopped with its data kept aside", async () => {
      const c = instance(instancePorts[0]!);
      await c.connect();
      await c.call("ACL", "SETUSER", "cache__acme", "on", `#${sha256("tenant-pw")}`, "~*", "+@all", "-@admin");
      await c.call("ACL", "SAVE");
      await c.set("k", "v");
      const before = await runIdOf(c);
      const gone = instance(instancePorts[1]!);
      await gone.connect();
      await gone.set("kept", "aside");
      await gone.call("BGREWRITEAOF");
      await new Promise((r) => setTimeout(r, 500));

      const second = await converge([`${names[0]} ${instancePorts[0]} 96`], "instances-2.log");
      expect(second.code, second.output).toBe(0);
      expect(second.output).toContain(`${names[0]}: maxmemory 96 MB`);
      expect(second.output).toMatch(new RegExp(`${names[1]}: stopped; its config and data are in /var/lib/redis/removed/${names[1]}\\.\\d{8}T\\d{6}Z`));
      const after = instance(instancePorts[0]!);
      await after.connect();
      expect(await runIdOf(after)).toBe(before);
      expect(await after.config("GET", "maxmemory")).toEqual(["maxmemory", String(96 * 1024 * 1024)]);
      expect(await after.get("k")).toBe("v");
      const tenant = instance(instancePorts[0]!, { username: "cache__acme", password: "tenant-pw" });
      await tenant.connect();
      expect(await tenant.get("k")).toBe("v");
      expect(readFileSync(path.join(etc, "instances", `${names[0]}.conf`), "utf8")).toContain("maxmemory 96mb");

      const refused = instance(instancePorts[1]!);
      await expect(refused.connect()).rejects.toThrow(/ECONNREFUSED|Connection is closed/);
      const removed = path.join(scratch, "var-lib-redis", "removed");
      const [aside] = readdirSync(removed);
      expect(aside).toMatch(new RegExp(`^${names[1]}\\.`));
      expect(readdirSync(path.join(removed, aside!)).sort()).toEqual(["data", `${names[1]}.acl`, `${names[1]}.conf`]);
      expect(readdirSync(path.join(removed, aside!, "data")).length).toBeGreaterThan(0);
    });

    it("is idempotent: the same manifest again changes nothing and restarts nothing", async () => {
      const c = instance(instancePorts[0]!);
      await c.connect();
      const before = await runIdOf(c);
      const third = await converge([`${names[0]} ${instancePorts[0]} 96`], "instances-3.log");
      expect(third.code, third.output).toBe(0);
      expect(third.output.trim()).toBe("");
      expect(await runIdOf(c)).toBe(before);
    });

    it("refuses a manifest line it cannot read, naming it", async () => {
      const bad = await converge([`${names[0]} ${instancePorts[0]} 96`, "Bad_Name 1 2"], "instances-4.log");
      expect(bad.code).not.toBe(0);
      expect(bad.output).toContain("bad manifest line: Bad_Name 1 2");
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe("MariaDB VM user-data (in an isolated filesystem view)", () => {
  const input: ConfigureInput = { engine: "mysql", adminUser: ADMIN, clientCidrs: ["10.20.0.0/16"], role: "shared", serverId: SERVER_ID };
  const adminPassword = password();
  let scratch: string;
  let port: number;
  let vm: IsolatedRoot | undefined;
  let userData: RenderedUserData;
  let files: { scriptFile: string; passwordFile: string };
  let firstRun: RunResult;

  const admin = (extra: Partial<mysql.ConnectionOptions> = {}): mysql.ConnectionOptions => ({
    host: "127.0.0.1",
    port,
    user: ADMIN,
    password: adminPassword,
    ssl: { rejectUnauthorized: false },
    ...extra,
  });
  async function query<T>(sql: string, opts = admin()): Promise<T[]> {
    const c = await mysql.createConnection(opts);
    try {
      return (await c.query(sql))[0] as T[];
    } finally {
      await c.end();
    }
  }
  const configure = (log: string): Promise<RunResult> =>
    vm!.exec("bash", [files.scriptFile], scriptEnv({ TF_PORT: String(port), TF_ADMIN_PASSWORD_FILE: files.passwordFile }), path.join(scratch, log), 180_000);

  beforeAll(async () => {
    scratch = mkdtempSync(path.join(os.tmpdir(), "tf-vm-mariadb-"));
    chmodSync(scratch, 0o755);
    port = await reservePort(BASE_PORTS.mysql, scratch);
    userData = renderUserData(input);
    files = stage(scratch, userData.script, adminPassword);
    const etc = path.join(scratch, "etc-mysql");
    cpSync("/etc/mysql", etc, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    vm = await IsolatedRoot.start([
      ["/etc/mysql", etc],
      ["/var/lib/mysql", ownedDir(scratch, "var-lib-mysql", "mysql:mysql")],
      ["/var/log", ownedDir(scratch, "var-log", "root:root")],
      ["/run", ownedDir(scratch, "run", "root:root")],
    ]);
    // What the mariadb-server package's postinst leaves: an initialised datadir, root by socket.
    const init = await vm.exec(
      "mariadb-install-db",
      ["--user=mysql", "--datadir=/var/lib/mysql", "--auth-root-authentication-method=socket", "--skip-test-db"],
      process.env,
      path.join(scratch, "install-db.log"),
    );
    if (init.code !== 0) throw new Error(`mariadb-install-db failed:\n${init.output}`);
    firstRun = await configure("configure-1.log");
  });

  afterAll(async () => {
    await vm?.stop();
    if (scratch) {
      await releasePort(port, scratch);
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it("renders cloud-config that installs MariaDB and runs the script after fetching the secret, without the password", () => {
    expectServerCloudConfig(userData, input);
    expect(userData.text).not.toContain(adminPassword);
  });

  it("configures and restarts MariaDB: the extracted script exits 0", () => {
    expect(firstRun.code, firstRun.output).toBe(0);
    expect(firstRun.output).toContain("MariaDB configured");
  });

  it("gives the configured error log a directory the server can write (Debian 12 creates none)", () => {
    const dir = statSync(path.join(scratch, "var-log", "mysql"));
    expect(dir.isDirectory()).toBe(true);
    expect(dir.uid).toBe(uid("mysql"));
  });

  it("logs the admin user in over TLS, with row-based binlog, GTID strict mode and the rendered server id", async () => {
    const rows = await query<{ Variable_name: string; Value: string }>(
      "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('binlog_format', 'log_bin', 'gtid_strict_mode', 'server_id', 'port')",
    );
    expect(Object.fromEntries(rows.map((r) => [r.Variable_name, r.Value]))).toEqual({
      binlog_format: "ROW",
      log_bin: "ON",
      gtid_strict_mode: "ON",
      server_id: String(SERVER_ID),
      port: String(port),
    });
    const [cipher] = await query<{ Value: string }>("SHOW SESSION STATUS LIKE 'Ssl_cipher'");
    expect(cipher!.Value).not.toBe("");
  });

  it("gives the admin every privilege and refuses a wrong password", async () => {
    const [grant] = await query<Record<string, string>>("SHOW GRANTS FOR CURRENT_USER()");
    expect(Object.values(grant!)[0]).toMatch(/GRANT ALL PRIVILEGES ON \*\.\* TO `tfadmin`@`%`.* WITH GRANT OPTION/);
    await expect(query("SELECT 1", admin({ password: `${adminPassword}x` }))).rejects.toMatchObject({ code: "ER_ACCESS_DENIED_ERROR" });
  });

  it("is idempotent: a second run restarts the server, exits 0, and the admin still logs in", async () => {
    await query("CREATE DATABASE IF NOT EXISTS tf_durable");
    const second = await configure("configure-2.log");
    expect(second.code, second.output).toBe(0);
    const [row] = await query<{ n: number; uptime: string }>(
      "SELECT (SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'tf_durable') AS n, (SELECT variable_value FROM information_schema.global_status WHERE variable_name = 'UPTIME') AS uptime",
    );
    expect(row!.n).toBe(1);
    expect(Number(row!.uptime)).toBeLessThan(60);
  });
});
