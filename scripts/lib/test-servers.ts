/**
 * Object-store servers for tests, built offline from Go modules and cached outside the repo.
 *
 * The backup store (dynamic-providers/backups/store.ts) talks to S3 and GCS; its tests run it
 * against real servers that speak those protocols on 127.0.0.1, never against mocks. No installer
 * or binary download reaches the internet here, so `scripts/setup` builds them through the Go module
 * proxy at pinned versions, once, with
 * `GOBIN=~/.cache/tenantfleet/test-servers/<name>-<version> go install <module>@<version>`.
 * A `stamp.json` written after a successful install marks the build as complete: an install that
 * was killed halfway is simply done again.
 */
import { execFile } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { cacheRoot, goEnv, type Log } from "./toolchain";

const execFileP = promisify(execFile);

export const TEST_SERVERS = {
  /** S3 protocol (path-style buckets, multipart uploads), in memory. */
  gofakes3: { module: "github.com/johannesboyne/gofakes3/cmd/gofakes3", version: "v1.2.0" },
  /** GCS JSON API (simple, multipart and resumable uploads), in memory. */
  "fake-gcs-server": { module: "github.com/fsouza/fake-gcs-server", version: "v1.56.1" },
} as const;

export type TestServerName = keyof typeof TEST_SERVERS;

export function testServerDir(name: TestServerName): string {
  return path.join(cacheRoot(), "test-servers", `${name}-${TEST_SERVERS[name].version}`);
}

function built(name: TestServerName): boolean {
  const dir = testServerDir(name);
  return existsSync(path.join(dir, name)) && existsSync(path.join(dir, "stamp.json"));
}

/** The built binary of a test server; throws, naming what to run, when setup has not built it. */
export function testServerBinary(name: TestServerName): string {
  if (!built(name)) {
    const { module, version } = TEST_SERVERS[name];
    throw new Error(`the test server ${name} (${module}@${version}) is not built in ${testServerDir(name)}: run \`npm run setup\` (it needs Go on PATH)`);
  }
  return path.join(testServerDir(name), name);
}


/**
 * `go install` every test server that is not built yet. Without Go on PATH it says so and builds
 * nothing (`npm start` does not need these; the backup-store tests then fail naming setup).
 */
export async function ensureTestServers(log: Log): Promise<void> {
  const missing = (Object.keys(TEST_SERVERS) as TestServerName[]).filter((n) => !built(n));
  if (missing.length === 0) return;
  try {
    await execFileP("go", ["version"]);
  } catch {
    log(`go is not on PATH: not building the S3/GCS test servers (${missing.join(", ")}); the backup-store tests need them`);
    return;
  }
  for (const name of missing) await installTestServer(name, log);
}

async function installTestServer(name: TestServerName, log: Log): Promise<void> {
  const { module, version } = TEST_SERVERS[name];
  const dir = testServerDir(name);
  const target = `${module}@${version}`;
  const started = Date.now();
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true });
  log(`building the test server ${name} (go install ${target}; about a minute cold on 2 cores, then cached)`);
  const heartbeat = setInterval(() => {
    log(`  … still building ${name} (${Math.round((Date.now() - started) / 1000)}s)`);
  }, 30_000);
  try {
    await execFileP("go", ["install", "-trimpath", "-ldflags", "-s -w", target], {
      cwd: dir, // outside the repo, so no go.mod around can interfere
      // `go install pkg@version` builds outside any main module, where -mod=mod is refused.
      env: { ...goEnv({ modMod: false }), GOBIN: dir },
      maxBuffer: 16 << 20,
      timeout: 30 * 60_000,
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    const detail = (e.stderr || e.message).trim().split("\n").slice(-12).join("\n");
    throw new Error(
      `building the test server ${name} failed: go install ${target}: ${detail}\n` +
        "Check that the Go module proxy serves it (go env GOPROXY) and that this Go is new enough for its go.mod.",
    );
  } finally {
    clearInterval(heartbeat);
  }
  if (!existsSync(path.join(dir, name))) {
    throw new Error(`go install ${target} finished but left no ${name} in ${dir}`);
  }
  const buildSeconds = Math.round((Date.now() - started) / 1000);
  await fs.writeFile(path.join(dir, "stamp.json"), JSON.stringify({ module, version, builtAt: new Date().toISOString(), buildSeconds }, null, 2) + "\n");
  log(`${name} ${version} ready in ${buildSeconds}s`);
}
