/** Running the real Pulumi CLI with the project's environment (used by scripts and e2e tests). */
import { spawn, type ChildProcess } from "node:child_process";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { backendDir, pulumiEnv, repoRoot } from "./pulumi-env";
import { cacheRoot, type Toolchain } from "./toolchain";

export const SHIM = "pulumi-resource-pulumi-nodejs";

/**
 * Put the dynamic-provider shim next to a cached `pulumi`, where the engine treats it as bundled
 * (on PATH it works too, but every run warns "using pulumi-resource-pulumi-nodejs from $PATH").
 */
export async function installShim(toolchain: Toolchain, root = repoRoot): Promise<void> {
  if (!toolchain.binDir.startsWith(cacheRoot())) return;
  const src = await fs.readFile(path.join(root, "bin", SHIM), "utf8");
  const dest = path.join(toolchain.binDir, SHIM);
  const current = await fs.readFile(dest, "utf8").catch(() => "");
  if (current !== src) await fs.writeFile(dest, src, { mode: 0o755 });
}

export interface PulumiRun {
  code: number;
  stdout: string;
  stderr: string;
}

export interface PulumiRunOptions {
  env?: NodeJS.ProcessEnv;
  /** Stream output to this process's stdout/stderr as well as capturing it. */
  echo?: boolean;
  cwd?: string;
  /** Called with the CLI's process once started (a test that kills a run needs its pid). */
  onSpawn?: (child: ChildProcess) => void;
}

export function runPulumi(toolchain: Toolchain, args: string[], opts: PulumiRunOptions = {}): Promise<PulumiRun> {
  const env = pulumiEnv({ binDir: toolchain.binDir, base: { ...process.env, ...opts.env } });
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(toolchain.binDir, "pulumi"), args, {
      cwd: opts.cwd ?? repoRoot,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    opts.onSpawn?.(child);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => {
      stdout += b;
      if (opts.echo) process.stdout.write(b);
    });
    child.stderr.on("data", (b: Buffer) => {
      stderr += b;
      if (opts.echo) process.stderr.write(b);
    });
    child.once("error", reject);
    child.once("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Like runPulumi, but rejects with the CLI's own output when it exits non-zero. */
export async function pulumiOk(toolchain: Toolchain, args: string[], opts: PulumiRunOptions = {}): Promise<PulumiRun> {
  const r = await runPulumi(toolchain, args, opts);
  if (r.code !== 0) {
    const lines = (r.stdout + "\n" + r.stderr).trim().split("\n");
    // The errors first: after a long diff they are far from the end.
    const errors = lines.filter((l) => /\berror:/.test(l)).slice(0, 20);
    throw new Error(`pulumi ${args.join(" ")} exited with ${r.code}:\n${errors.length ? `${errors.join("\n")}\n…\n` : ""}${lines.slice(-40).join("\n")}`);
  }
  return r;
}

/** Select `stack`, creating it in the file backend when it does not exist yet. */
export async function selectStack(toolchain: Toolchain, stack: string, opts: PulumiRunOptions = {}): Promise<void> {
  await pulumiOk(toolchain, ["stack", "select", "--create", stack, "--non-interactive"], opts);
}

export interface StaleLock {
  /** The lock file in the file backend. */
  file: string;
  /** `organization/<project>/<stack>`. */
  stack: string;
  pid: number;
  timestamp: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * A killed `pulumi up` leaves the file backend's stack lock behind, and every later run stops on
 * it ("the stack is currently locked"). Remove the locks of this backend that were taken on this
 * machine by a process that no longer exists; a lock of a live process, or of another machine
 * sharing the backend, is left alone. Returns what was removed.
 */
export async function clearStaleLocks(root = repoRoot): Promise<StaleLock[]> {
  const dir = path.join(backendDir(root), ".pulumi", "locks");
  const entries = await fs.readdir(dir, { recursive: true }).catch(() => [] as string[]);
  const removed: StaleLock[] = [];
  for (const rel of entries) {
    if (!rel.endsWith(".json")) continue;
    const file = path.join(dir, rel);
    let lock: { pid?: number; hostname?: string; timestamp?: string };
    try {
      lock = JSON.parse(await fs.readFile(file, "utf8"));
    } catch {
      continue; // being written, or not a lock of ours
    }
    if (lock.hostname !== os.hostname() || typeof lock.pid !== "number" || alive(lock.pid)) continue;
    await fs.rm(file, { force: true });
    removed.push({ file, stack: path.dirname(rel), pid: lock.pid, timestamp: lock.timestamp ?? "" });
  }
  return removed;
}

/** One line a user reads about a removed lock. */
export function describeStaleLock(l: StaleLock): string {
  return `removed the lock on stack ${l.stack.split(path.sep).pop()} left by pulumi process ${l.pid} (started ${l.timestamp}), which is gone: a killed run. The next \`pulumi up\` finishes or undoes what it left`;
}
