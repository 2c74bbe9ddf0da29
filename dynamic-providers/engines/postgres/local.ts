/** PostgreSQL as a local server: initdb + pg_ctl from Debian's postgresql package, run as the
 * `postgres` account when we are root (PostgreSQL refuses to run as root). */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import type { LocalEngineRuntime, LocalServerLayout } from "../local-runtime";
import { chownTree, livePid, logTail, run, startDetached } from "../../local-server/process";
import { postgresMaxConnections, postgresSettings, renderPgHba, renderPostgresConf } from "./settings";

export async function binDir(): Promise<string> {
  const root = "/usr/lib/postgresql";
  let versions: string[] = [];
  try {
    versions = (await fs.readdir(root)).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  } catch {
    /* not installed */
  }
  for (const v of versions) {
    const dir = path.join(root, v, "bin");
    try {
      await fs.access(path.join(dir, "initdb"));
      return dir;
    } catch {
      /* try the next */
    }
  }
  throw new Error("PostgreSQL server binaries not found under /usr/lib/postgresql: install Debian's postgresql package (npm run setup does)");
}

/** Absolute path of a PostgreSQL client or server program (pg_dump, pg_restore, psql, …). */
export async function pgBinary(name: string): Promise<string> {
  return path.join(await binDir(), name);
}

async function writeConfig(l: LocalServerLayout): Promise<void> {
  const conf = renderPostgresConf(postgresSettings({ port: l.port, listenAddresses: "127.0.0.1", maxConnections: postgresMaxConnections("local", "shared") }));
  await fs.writeFile(path.join(l.dataDir, "tenantfleet.conf"), conf);
  await fs.writeFile(path.join(l.dataDir, "pg_hba.conf"), renderPgHba(["127.0.0.1/32"]));
  const main = path.join(l.dataDir, "postgresql.conf");
  const text = await fs.readFile(main, "utf8");
  if (!text.includes("include = 'tenantfleet.conf'")) {
    await fs.appendFile(main, "\n# tenantfleet settings (last, so they win)\ninclude = 'tenantfleet.conf'\n");
  }
  await chownTree(l.dataDir, l.user);
}

export const postgresLocal: LocalEngineRuntime = {
  serviceUser: "postgres",
  async requireBinaries() {
    await binDir();
  },
  async version() {
    const { stdout } = await run(path.join(await binDir(), "postgres"), ["--version"]);
    return /(\d+(\.\d+)*)/.exec(stdout)?.[1] ?? stdout.trim();
  },
  async init(l, admin) {
    const bin = await binDir();
    const pwfile = path.join(l.runDir, "initdb.pw");
    await fs.writeFile(pwfile, admin.password + "\n", { mode: 0o600 });
    await chownTree(l.dir, l.user);
    try {
      await run(
        path.join(bin, "initdb"),
        ["-D", l.dataDir, "-U", admin.user, `--pwfile=${pwfile}`, "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"],
        { user: l.user, timeoutMs: 180_000 },
      );
    } finally {
      await fs.rm(pwfile, { force: true });
    }
    await this.start(l);
  },
  async start(l) {
    await writeConfig(l);
    const { code } = await startDetached(
      path.join(await binDir(), "pg_ctl"),
      ["-D", l.dataDir, "-l", l.logFile, "-w", "-t", "120", "start"],
      { user: l.user, logFile: l.logFile, wait: true, cwd: l.dir },
    );
    if (code !== 0) throw new Error(`pg_ctl start exited with ${code}; last log lines:\n${await logTail(l.logFile)}`);
  },
  async stop(l) {
    if (!(await this.runningPid(l))) return;
    await run(path.join(await binDir(), "pg_ctl"), ["-D", l.dataDir, "-m", "fast", "-w", "-t", "120", "stop"], {
      user: l.user,
      cwd: l.dir,
      timeoutMs: 180_000,
    });
  },
  runningPid: (l) => livePid(path.join(l.dataDir, "postmaster.pid")),
};
