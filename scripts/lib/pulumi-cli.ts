/** Running the real Pulumi CLI with the project's environment (used by scripts and e2e tests). */
import { spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { pulumiEnv, repoRoot } from "./pulumi-env";
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
}

export function runPulumi(toolchain: Toolchain, args: string[], opts: PulumiRunOptions = {}): Promise<PulumiRun> {
  const env = pulumiEnv({ binDir: toolchain.binDir, base: { ...process.env, ...opts.env } });
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(toolchain.binDir, "pulumi"), args, {
      cwd: opts.cwd ?? repoRoot,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
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
    const tail = (r.stdout + "\n" + r.stderr).trim().split("\n").slice(-40).join("\n");
    throw new Error(`pulumi ${args.join(" ")} exited with ${r.code}:\n${tail}`);
  }
  return r;
}

/** Select `stack`, creating it in the file backend when it does not exist yet. */
export async function selectStack(toolchain: Toolchain, stack: string, opts: PulumiRunOptions = {}): Promise<void> {
  await pulumiOk(toolchain, ["stack", "select", "--create", stack, "--non-interactive"], opts);
}
