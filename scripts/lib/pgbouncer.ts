/**
 * PgBouncer (the Debian package) as a benchmark baseline: its ini and auth_file rendered from a
 * few fields, and one PgBouncer process in its own directory. PgBouncer refuses to run as root, so
 * when we are root it runs as the `postgres` account (which must be able to reach its directory).
 *
 * Auth: the auth_file holds the role's SCRAM verifier (`"role" "SCRAM-SHA-256$…"`, PgBouncer
 * ≥ 1.14). A client that logs in with SCRAM against it lets PgBouncer log in to the server with the
 * same ClientKey (SCRAM pass-through), so no plaintext password is written anywhere — the same
 * arrangement as tenantfleet's proxy.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { promises as fs, readFileSync } from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { promisify } from "node:util";
import { freePort } from "./free-port";

export { freePort };

const execFileP = promisify(execFile);

export const PGBOUNCER = process.env.PGBOUNCER ?? "/usr/sbin/pgbouncer";

export interface PgbouncerDatabase {
  /** Name clients connect with. */
  name: string;
  host: string;
  port: number;
  /** Database on the server (defaults to `name`). */
  dbname?: string;
  /** This database's pool size (else default_pool_size). */
  poolSize?: number;
}

export interface PgbouncerConfig {
  listenHost: string;
  listenPort: number;
  dir: string;
  databases: PgbouncerDatabase[];
  poolMode?: "session" | "transaction" | "statement";
  authType?: "scram-sha-256" | "md5" | "plain" | "trust";
  maxClientConn?: number;
  defaultPoolSize?: number;
  /** server_idle_timeout, seconds (PgBouncer's default: 600). */
  serverIdleTimeout?: number;
}

/** A value in an auth_file: double-quoted, a double quote doubled. */
export function authFileQuote(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

/** auth_file lines: `"user" "secret"`, secret a SCRAM verifier, an md5 hash or plain text. */
export function renderAuthFile(users: { user: string; secret: string }[]): string {
  return users.map((u) => `${authFileQuote(u.user)} ${authFileQuote(u.secret)}\n`).join("");
}

/** A libpq-style connect-string value for the [databases] section. */
function connValue(v: string | number): string {
  const s = String(v);
  return /^[A-Za-z0-9_.\-/]+$/.test(s) ? s : `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

function iniName(s: string): string {
  if (!/^[A-Za-z0-9_.\-]+$/.test(s)) throw new Error(`database name ${JSON.stringify(s)} needs quoting in pgbouncer.ini; not supported here`);
  return s;
}

export function renderPgbouncerIni(c: PgbouncerConfig): string {
  const lines = ["[databases]"];
  for (const d of c.databases) {
    lines.push(`${iniName(d.name)} = host=${connValue(d.host)} port=${d.port} dbname=${connValue(d.dbname ?? d.name)}${d.poolSize ? ` pool_size=${d.poolSize}` : ""}`);
  }
  lines.push(
    "",
    "[pgbouncer]",
    `listen_addr = ${c.listenHost}`,
    `listen_port = ${c.listenPort}`,
    // TCP only: no unix socket in /tmp to collide with a system PgBouncer or another run.
    "unix_socket_dir =",
    `auth_type = ${c.authType ?? "scram-sha-256"}`,
    `auth_file = ${path.join(c.dir, "userlist.txt")}`,
    `pool_mode = ${c.poolMode ?? "session"}`,
    `max_client_conn = ${c.maxClientConn ?? 100}`,
    `default_pool_size = ${c.defaultPoolSize ?? 20}`,
    ...(c.serverIdleTimeout !== undefined ? [`server_idle_timeout = ${c.serverIdleTimeout}`] : []),
    // JDBC and node-postgres send it; PgBouncer would refuse the login otherwise.
    "ignore_startup_parameters = extra_float_digits",
    `logfile = ${path.join(c.dir, "pgbouncer.log")}`,
    `pidfile = ${path.join(c.dir, "pgbouncer.pid")}`,
    "log_connections = 0",
    "log_disconnections = 0",
    "",
  );
  return lines.join("\n");
}

/** uid/gid of an account from /etc/passwd, or undefined. */
export function accountIds(name: string): { uid: number; gid: number } | undefined {
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const f = line.split(":");
      if (f[0] === name && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
    }
  } catch {
    /* no passwd file */
  }
  return undefined;
}

export async function pgbouncerVersion(): Promise<string> {
  const { stdout } = await execFileP(PGBOUNCER, ["--version"]);
  return stdout.split("\n")[0]!.trim();
}


async function waitForPort(host: string, port: number, timeoutMs: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`pgbouncer exited (${child.exitCode ?? child.signalCode}) before listening`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port });
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`pgbouncer did not listen on ${host}:${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface PgbouncerProcess {
  host: string;
  port: number;
  dir: string;
  child: ChildProcess;
  /** The account it runs as. */
  user: string;
  log(): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Start PgBouncer in the foreground with its own ini in `dir` (created; owned by the account it
 * runs as). Resolves once it accepts TCP connections.
 */
export async function startPgbouncer(
  cfg: Omit<PgbouncerConfig, "dir" | "listenPort"> & { dir: string; listenPort?: number },
  users: { user: string; secret: string }[],
): Promise<PgbouncerProcess> {
  const port = cfg.listenPort ?? (await freePort(cfg.listenHost));
  const full: PgbouncerConfig = { ...cfg, listenPort: port };
  await fs.mkdir(cfg.dir, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  const ids = asRoot ? accountIds("postgres") : undefined;
  if (asRoot && !ids) throw new Error("running as root and there is no postgres account to run PgBouncer as (it refuses root)");
  const ini = path.join(cfg.dir, "pgbouncer.ini");
  const auth = path.join(cfg.dir, "userlist.txt");
  await fs.writeFile(ini, renderPgbouncerIni(full), { mode: 0o600 });
  await fs.writeFile(auth, renderAuthFile(users), { mode: 0o600 });
  if (ids) {
    for (const p of [cfg.dir, ini, auth]) await fs.chown(p, ids.uid, ids.gid);
  }
  await fs.chmod(cfg.dir, 0o700);
  let stderr = "";
  const child = spawn(PGBOUNCER, [ini], {
    cwd: cfg.dir,
    stdio: ["ignore", "ignore", "pipe"],
    ...(ids ? { uid: ids.uid, gid: ids.gid } : {}),
  });
  child.stderr!.on("data", (d) => (stderr += d));
  const spawned = new Promise<void>((resolve, reject) => {
    child.once("spawn", resolve);
    child.once("error", reject);
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM"); // PgBouncer: SIGTERM = immediate shutdown
    const t = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(t);
  };
  const readLog = async () => {
    const file = await fs.readFile(path.join(cfg.dir, "pgbouncer.log"), "utf8").catch(() => "");
    return file + stderr;
  };
  try {
    await spawned;
    await waitForPort(cfg.listenHost, port, 10_000, child);
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}\n${await readLog()}`);
  }
  return { host: cfg.listenHost, port, dir: cfg.dir, child, user: ids ? "postgres" : (process.env.USER ?? "current user"), log: readLog, stop };
}
