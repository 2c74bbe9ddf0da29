/**
 * The Pulumi toolchain, built offline from Go modules and cached outside the repo.
 *
 * No installer reaches the internet here, and the npm `pulumi` package downloads its binary at
 * run time, so `scripts/setup` builds `pulumi` and `pulumi-language-nodejs` through the Go module
 * proxy at the version that matches the pinned `@pulumi/pulumi`, once, into
 * `~/.cache/tenantfleet/pulumi-<version>/bin`. Later runs find the cache and return at once.
 *
 * Why the repo is laid out by hand: `pkg/v3` carries a relative `replace ../sdk`, so
 * `go install pkg@ver` is refused; downloading `pkg` and `sdk` side by side as the repo has them
 * lets the replace resolve. The release build sets the version with `-ldflags -X`; without it
 * the CLI reports an empty version and plugin version checks break.
 *
 * The Node.js language host is its own module (`sdk/nodejs/cmd/pulumi-language-nodejs/v3`) with
 * no version tags: it is addressed by the pseudo-version of the commit of the `pkg/v3` tag. When
 * the module proxy will not serve that (some proxies only serve versions they have already seen),
 * we fall back to the last `sdk/v3` release that still carried the host inside the sdk module
 * (v3.66.0). The engine↔host protocol is backward compatible (the engine still sends every field
 * the older host reads), and the host only launches `node @pulumi/pulumi/cmd/run` from the
 * project's own pinned SDK, so the program still runs on the pinned SDK. One difference shows:
 * the newer engine sends Pulumi.yaml's runtime options only in `RunRequest.info`, which that host
 * never reads, so pulumi-env.ts sets the equivalent PULUMI_NODEJS_* variables instead.
 */
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

export const PULUMI_MODULE = "github.com/pulumi/pulumi";
export const LANGUAGE_HOST_MODULE = `${PULUMI_MODULE}/sdk/nodejs/cmd/pulumi-language-nodejs/v3`;
/** The last sdk/v3 release whose module still contains nodejs/cmd/pulumi-language-nodejs. */
export const EMBEDDED_LANGUAGE_HOST_SDK = "3.66.0";

export interface Toolchain {
  /** Directory holding `pulumi` and `pulumi-language-nodejs`. */
  binDir: string;
  /** The CLI version, without a leading `v`. */
  version: string;
  /** Where it came from: a cached build or a compatible `pulumi` already on PATH. */
  source: "cache" | "path" | "built";
  /** How the language host was obtained (recorded at build time). */
  languageHost?: string;
}

export interface Stamp {
  pulumi: string;
  languageHost: string;
  builtAt: string;
  buildSeconds: number;
}

export type Log = (line: string) => void;

/** The version of @pulumi/pulumi this repo pins (read from the installed package). */
export async function pinnedSdkVersion(repoRoot: string): Promise<string> {
  const pkg = JSON.parse(
    await fs.readFile(path.join(repoRoot, "node_modules/@pulumi/pulumi/package.json"), "utf8"),
  ) as { version: string };
  return pkg.version;
}

export function cacheRoot(): string {
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache");
  return path.join(base, "tenantfleet");
}

export function toolchainDir(version: string): string {
  return path.join(cacheRoot(), `pulumi-${version}`);
}

/** Parse `v3.259.0` / `3.259.0-alpha.x` into numbers; undefined when it is not a version. */
export function parseVersion(text: string): [number, number, number] | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(text.trim());
  if (!m) return undefined;
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

/**
 * A CLI is compatible with the pinned SDK when it has the same major version and is at least as
 * new: the SDK may rely on engine features of its own release, never on removed ones.
 */
export function isCompatibleCli(cliVersion: string, sdkVersion: string): boolean {
  const cli = parseVersion(cliVersion);
  const sdk = parseVersion(sdkVersion);
  if (!cli || !sdk) return false;
  if (cli[0] !== sdk[0]) return false;
  if (cli[1] !== sdk[1]) return cli[1] > sdk[1];
  return cli[2] >= sdk[2];
}

/**
 * The pseudo-version Go gives an untagged module at a commit: `v3.0.0-<yyyymmddhhmmss>-<12 hex>`.
 * `commitTime` is the commit's UTC time as the module proxy reports it (`.info` Time).
 */
export function pseudoVersion(major: number, commitTime: string, commitHash: string): string {
  const t = new Date(commitTime);
  if (Number.isNaN(t.getTime())) throw new Error(`not a time: ${commitTime}`);
  const pad = (n: number) => String(n).padStart(2, "0");
  const stamp =
    `${t.getUTCFullYear()}${pad(t.getUTCMonth() + 1)}${pad(t.getUTCDate())}` +
    `${pad(t.getUTCHours())}${pad(t.getUTCMinutes())}${pad(t.getUTCSeconds())}`;
  if (!/^[0-9a-f]{12,40}$/.test(commitHash)) throw new Error(`not a commit hash: ${commitHash}`);
  return `v${major}.0.0-${stamp}-${commitHash.slice(0, 12)}`;
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}

/** The version a `pulumi` binary reports, or undefined when it does not run. */
export async function cliVersion(pulumiBin: string): Promise<string | undefined> {
  try {
    const { stdout } = await execFileP(pulumiBin, ["version"], {
      env: { ...process.env, PULUMI_SKIP_UPDATE_CHECK: "true" },
      timeout: 30_000,
    });
    return stdout.trim().replace(/^v/, "") || undefined;
  } catch {
    return undefined;
  }
}

async function which(cmd: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, cmd);
    try {
      await fs.access(p, fs.constants.X_OK);
      return p;
    } catch {
      /* keep looking */
    }
  }
  return undefined;
}

/** A usable toolchain without building: the cache for this version, or a compatible PATH one. */
export async function findToolchain(sdkVersion: string): Promise<Toolchain | undefined> {
  const dir = toolchainDir(sdkVersion);
  const binDir = path.join(dir, "bin");
  const stampFile = path.join(dir, "stamp.json");
  if (
    (await exists(stampFile)) &&
    (await exists(path.join(binDir, "pulumi"))) &&
    (await exists(path.join(binDir, "pulumi-language-nodejs")))
  ) {
    const stamp = JSON.parse(await fs.readFile(stampFile, "utf8")) as Stamp;
    return { binDir, version: stamp.pulumi, source: "cache", languageHost: stamp.languageHost };
  }
  const onPath = await which("pulumi");
  if (onPath && (await which("pulumi-language-nodejs"))) {
    const v = await cliVersion(onPath);
    if (v && isCompatibleCli(v, sdkVersion)) {
      return { binDir: path.dirname(onPath), version: v, source: "path" };
    }
  }
  return undefined;
}

interface GoModInfo {
  Path: string;
  Version: string;
  Dir?: string;
  Info?: string;
  Error?: string;
}

async function goModDownload(modVersion: string, env: NodeJS.ProcessEnv): Promise<GoModInfo> {
  try {
    const { stdout } = await execFileP("go", ["mod", "download", "-json", modVersion], {
      env,
      maxBuffer: 16 << 20,
      timeout: 20 * 60_000,
    });
    return JSON.parse(stdout) as GoModInfo;
  } catch (err) {
    // `go mod download -json` exits non-zero on failure but still prints the JSON with Error.
    const out = (err as { stdout?: string }).stdout;
    if (out) {
      try {
        return JSON.parse(out) as GoModInfo;
      } catch {
        /* fall through */
      }
    }
    throw err;
  }
}

async function copyWritable(from: string, to: string): Promise<void> {
  await fs.rm(to, { recursive: true, force: true });
  await fs.cp(from, to, { recursive: true });
  // The module cache is read-only; the build writes nothing into sources, but `go` wants to be
  // able to update go.sum in the main module when a replace points elsewhere.
  await execFileP("chmod", ["-R", "u+w", to]);
}

async function goBuild(
  cwd: string,
  pkg: string,
  out: string,
  versionForLdflags: string,
  env: NodeJS.ProcessEnv,
  log: Log,
): Promise<void> {
  const ldflags = `-s -w -X ${PULUMI_MODULE}/sdk/v3/go/common/version.Version=v${versionForLdflags}`;
  const started = Date.now();
  // A cold compile is silent for minutes: say that it is alive.
  const heartbeat = setInterval(() => {
    const s = Math.round((Date.now() - started) / 1000);
    log(`  … still compiling ${path.basename(out)} (${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s)`);
  }, 30_000);
  try {
    await execFileP("go", ["build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg], {
      cwd,
      env,
      maxBuffer: 64 << 20,
      timeout: 60 * 60_000,
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`go build ${pkg} failed: ${(e.stderr || e.message).trim().split("\n").slice(-15).join("\n")}`);
  } finally {
    clearInterval(heartbeat);
  }
}

/** Go's environment for the project's builds: the local Go, static binaries. `-mod=mod` resolves
 * modules for builds inside a module; `go install pkg@version` refuses it (test-servers.ts). */
export function goEnv(opts: { modMod?: boolean } = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GOFLAGS: opts.modMod === false ? "-buildvcs=false" : "-buildvcs=false -mod=mod",
    GOTOOLCHAIN: process.env.GOTOOLCHAIN ?? "local",
    CGO_ENABLED: "0",
  };
}

/**
 * Build `pulumi` and `pulumi-language-nodejs` for `version` into the cache. The build happens in
 * a scratch dir and is renamed into place only when both binaries report their version, so a
 * killed build never leaves a half-made cache behind.
 */
export async function buildToolchain(version: string, log: Log): Promise<Toolchain> {
  const started = Date.now();
  const env = goEnv();
  try {
    await execFileP("go", ["version"], { env });
  } catch {
    throw new Error(
      "Go is needed to build the Pulumi CLI offline but `go` is not on PATH. " +
        "Install Go (e.g. /usr/local/go) or put a pulumi >= " +
        version +
        " with pulumi-language-nodejs on PATH, then rerun `npm run setup`.",
    );
  }
  const finalDir = toolchainDir(version);
  const scratch = `${finalDir}.build-${process.pid}`;
  await fs.rm(scratch, { recursive: true, force: true });
  await fs.mkdir(path.join(scratch, "bin"), { recursive: true });
  const src = path.join(scratch, "src");

  log(`downloading ${PULUMI_MODULE}/pkg/v3@v${version} and sdk/v3@v${version} through the Go module proxy`);
  const pkg = await goModDownload(`${PULUMI_MODULE}/pkg/v3@v${version}`, env);
  const sdk = await goModDownload(`${PULUMI_MODULE}/sdk/v3@v${version}`, env);
  for (const m of [pkg, sdk]) {
    if (m.Error || !m.Dir) {
      throw new Error(
        `the Go module proxy did not serve ${m.Path}@${m.Version}: ${m.Error ?? "no Dir"}. ` +
          "Check GOPROXY (go env GOPROXY) or pin an @pulumi/pulumi version the proxy has.",
      );
    }
  }
  // Lay the modules out as the pulumi repo does, so pkg's `replace ../sdk` resolves.
  await copyWritable(pkg.Dir!, path.join(src, "pkg"));
  await copyWritable(sdk.Dir!, path.join(src, "sdk"));

  log(`building pulumi v${version} (cold build takes several minutes on 2 cores)`);
  await goBuild(path.join(src, "pkg"), "./cmd/pulumi", path.join(scratch, "bin", "pulumi"), version, env, log);

  const languageHost = await buildLanguageHost(version, pkg, src, scratch, env, log);

  const built = await cliVersion(path.join(scratch, "bin", "pulumi"));
  if (built !== version) {
    throw new Error(`the built pulumi reports version ${JSON.stringify(built)}, expected ${version}`);
  }
  const stamp: Stamp = {
    pulumi: version,
    languageHost,
    builtAt: new Date().toISOString(),
    buildSeconds: Math.round((Date.now() - started) / 1000),
  };
  await fs.writeFile(path.join(scratch, "stamp.json"), JSON.stringify(stamp, null, 2) + "\n");
  await fs.rm(src, { recursive: true, force: true });
  await fs.rm(finalDir, { recursive: true, force: true });
  await fs.rename(scratch, finalDir);
  log(`pulumi v${version} ready in ${stamp.buildSeconds}s (${languageHost})`);
  return { binDir: path.join(finalDir, "bin"), version, source: "built", languageHost };
}

async function buildLanguageHost(
  version: string,
  pkg: GoModInfo,
  src: string,
  scratch: string,
  env: NodeJS.ProcessEnv,
  log: Log,
): Promise<string> {
  const out = path.join(scratch, "bin", "pulumi-language-nodejs");
  // 1. The host at the commit of the pkg tag, as a pseudo-version.
  const info = pkg.Info ? (JSON.parse(await fs.readFile(pkg.Info, "utf8")) as InfoFile) : undefined;
  if (info?.Origin?.Hash && info.Time) {
    const pv = pseudoVersion(3, info.Time, info.Origin.Hash);
    log(`downloading ${LANGUAGE_HOST_MODULE}@${pv} (the commit of pkg/v${version})`);
    const host = await goModDownload(`${LANGUAGE_HOST_MODULE}@${pv}`, env).catch(
      (e: Error): GoModInfo => ({ Path: LANGUAGE_HOST_MODULE, Version: pv, Error: e.message }),
    );
    if (host.Dir && !host.Error) {
      const dir = path.join(src, "sdk", "nodejs", "cmd", "pulumi-language-nodejs");
      await copyWritable(host.Dir, dir);
      log(`building pulumi-language-nodejs at ${pv}`);
      await goBuild(dir, ".", out, version, env, log);
      return `pulumi-language-nodejs ${pv} (commit of pkg/v${version})`;
    }
    log(`the module proxy does not serve the language host at ${pv}: ${firstLine(host.Error)}`);
  }
  // 2. The last sdk/v3 release that carried the host inside the sdk module.
  const fallback = EMBEDDED_LANGUAGE_HOST_SDK;
  log(`falling back to the Node.js language host embedded in sdk/v3@v${fallback}`);
  const old = await goModDownload(`${PULUMI_MODULE}/sdk/v3@v${fallback}`, env);
  if (old.Error || !old.Dir) {
    throw new Error(
      `no Node.js language host could be fetched: ${LANGUAGE_HOST_MODULE} and ` +
        `sdk/v3@v${fallback} were both refused by the module proxy (${firstLine(old.Error)}). ` +
        "Put a pulumi-language-nodejs on PATH and rerun `npm run setup`.",
    );
  }
  const dir = path.join(src, `sdk-${fallback}`);
  await copyWritable(old.Dir, dir);
  await goBuild(dir, "./nodejs/cmd/pulumi-language-nodejs", out, fallback, env, log);
  return `pulumi-language-nodejs from sdk/v3@v${fallback} (module proxy refused the pkg/v${version} commit)`;
}

interface InfoFile {
  Version: string;
  Time?: string;
  Origin?: { Hash?: string };
}

function firstLine(s: string | undefined): string {
  return (s ?? "").split("\n")[0] ?? "";
}
