/**
 * Running server processes on this machine: as an unprivileged user when we are root
 * (PostgreSQL refuses to run as root), detached in their own session so they outlive the Pulumi
 * provider process that started them, with output to a log file.
 */
import { execFile, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, promises as fs, readFileSync } from "node:fs";
import * as net from "node:net";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

export const isRoot = (): boolean => process.getuid?.() === 0;

/** Prefix a command so it runs as `user` (only when we are root and a user is given). */
export function asUser(user: string | undefined, cmd: string, args: string[]): [string, string[]] {
  if (!user || !isRoot()) return [cmd, args];
  return ["runuser", ["-u", user, "--", cmd, ...args]];
}

export async function run(
  cmd: string,
  args: string[],
  opts: { user?: string; cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<{ stdout: string; stderr: string }> {
  const [c, a] = asUser(opts.user, cmd, args);
  try {
    return await execFileP(c, a, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      timeout: opts.timeoutMs ?? 120_000,
      maxBuffer: 16 << 20,
    });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    const detail = (e.stderr || e.stdout || "").trim().split("\n").slice(-5).join("\n");
    throw new Error(`${[cmd, ...args].join(" ")} failed: ${detail || e.message}`);
  }
}

/**
 * Start a command in a new session (so signals to the caller's process group never reach it),
 * stdout/stderr appended to `logFile`. Resolves with its exit code when `wait` is true (for
 * commands that daemonise themselves, like pg_ctl), or with its pid at once otherwise.
 * `daemon`: for a server that does not daemonise itself (mariadbd), `setsid --fork` makes it
 * one: it is parented to init rather than to this process, so it outlives a killed `pulumi up`
 * (whose whole process tree dies) as a daemonised server does; resolves once forked, with the
 * exit code of setsid (the server's pid is in its pid file).
 */
export async function startDetached(
  cmd: string,
  args: string[],
  opts: { user?: string; logFile: string; wait: boolean; daemon?: boolean; cwd?: string; env?: NodeJS.ProcessEnv },
): Promise<{ pid: number; code?: number }> {
  let [c, a] = asUser(opts.user, cmd, args);
  if (opts.daemon) {
    [c, a] = ["setsid", ["--fork", c, ...a]];
    opts = { ...opts, wait: true };
  }
  const fd = openSync(opts.logFile, "a");
  try {
    // The server (running as opts.user) appends to the same log later.
    await chownTree(opts.logFile, opts.user);
    const child = spawn(c, a, { detached: true, stdio: ["ignore", fd, fd], cwd: opts.cwd, env: opts.env ?? process.env });
    const pid = child.pid;
    if (pid === undefined) {
      const err = await new Promise<Error>((resolve) => child.once("error", resolve));
      throw new Error(`could not start ${cmd}: ${err.message}`);
    }
    if (!opts.wait) {
      child.unref();
      return { pid };
    }
    const code = await new Promise<number>((resolve, reject) => {
      child.once("error", reject);
      child.once("exit", (c) => resolve(c ?? -1));
    });
    return { pid, code };
  } finally {
    closeSync(fd);
  }
}

/** True while `pid` is a live process. A zombie (exited, not yet reaped by its parent — daemonised
 * servers are reparented to PID 1, which may reap late) counts as dead. */
export function pidAlive(pid: number | undefined): boolean {
  if (!pid || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return !existsSync("/proc/self/stat"); // no procfs: trust kill(0)
  }
}

export async function readPid(file: string): Promise<number | undefined> {
  try {
    const first = (await fs.readFile(file, "utf8")).split("\n")[0]?.trim();
    const pid = Number(first);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The pid in `pidFile` when that process is alive. */
export async function livePid(pidFile: string): Promise<number | undefined> {
  const pid = await readPid(pidFile);
  return pidAlive(pid) ? pid : undefined;
}

/** Wait until the process of `pidFile` is alive and accepts connections on `port`. */
export async function waitUntilServing(
  what: string,
  pidFile: string,
  port: number,
  opts: { timeoutMs: number; logFile: string },
): Promise<void> {
  await waitFor(`${what} on port ${port}`, async () => (await livePid(pidFile)) !== undefined && (await portOpen(port)), opts);
}

export function portOpen(port: number, host = "127.0.0.1", timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}

/** Poll `probe` until it returns true; throw with `what` and the tail of `logFile` on timeout. */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  opts: { timeoutMs: number; logFile?: string; intervalMs?: number },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) {
      const tail = opts.logFile ? await logTail(opts.logFile) : "";
      throw new Error(`timed out after ${opts.timeoutMs / 1000}s waiting for ${what}${tail ? `; last log lines:\n${tail}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
}

export async function logTail(file: string, lines = 8): Promise<string> {
  try {
    return (await fs.readFile(file, "utf8")).trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/** Send SIGTERM and wait for the process to exit; SIGKILL after `timeoutMs`. */
export async function stopPid(pid: number | undefined, timeoutMs = 60_000): Promise<void> {
  if (!pidAlive(pid)) return;
  process.kill(pid!, "SIGTERM");
  const deadline = Date.now() + timeoutMs;
  while (pidAlive(pid)) {
    if (Date.now() > deadline) {
      process.kill(pid!, "SIGKILL");
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function chownTree(path: string, user: string | undefined): Promise<void> {
  if (!user || !isRoot()) return;
  await run("chown", ["-R", `${user}:${user}`, path]);
}

/** True when `user` can create files in `dir` (the check PostgreSQL's data dir needs). */
export async function userCanWrite(user: string | undefined, dir: string): Promise<boolean> {
  if (!user || !isRoot()) return true;
  try {
    await execFileP("runuser", ["-u", user, "--", "test", "-w", dir]);
    return true;
  } catch {
    return false;
  }
}

export async function userExists(user: string): Promise<boolean> {
  try {
    await execFileP("id", ["-u", user]);
    return true;
  } catch {
    return false;
  }
}
