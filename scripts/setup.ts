#!/usr/bin/env -S npx tsx
/**
 * scripts/setup — idempotent; `npm start` and `npm test` call it first.
 *
 *  1. where the state lives: `.tenantfleet/`, or a folder the servers' accounts can reach (said)
 *  2. the Debian packages the local platform runs (postgresql, mariadb-server, redis-server)
 *  3. the Pulumi CLI and Node.js language host matching the pinned @pulumi/pulumi, built offline
 *     from Go modules and cached in ~/.cache/tenantfleet (instant once cached)
 *  4. the S3/GCS test servers (gofakes3, fake-gcs-server), likewise from Go modules and cached
 *
 * Flags: --quiet (print only when there is work to do).
 */
import { $, fs } from "zx";
import { missingPackages } from "./lib/system-packages";
import { buildToolchain, findToolchain, pinnedSdkVersion, type Toolchain } from "./lib/toolchain";
import { backendDir, repoRoot } from "./lib/pulumi-env";
import { installShim } from "./lib/pulumi-cli";
import { ensureTestServers } from "./lib/test-servers";
import { chooseStateRoot } from "../dynamic-providers/local-server/state";

const say = (line: string) => console.log(`[setup] ${line}`);

export async function setup(opts: { quiet?: boolean } = {}): Promise<Toolchain> {
  const progress = (line: string) => {
    if (!opts.quiet) say(line);
  };
  $.verbose = false;
  $.cwd = repoRoot;

  // npm dependencies: installed by scripts/install-deps.mjs (npm's pre-hook) before this runs.
  const state = process.env.TENANTFLEET_STATE_DIR ? undefined : chooseStateRoot(repoRoot);
  if (state?.redirected) {
    (state.chosenNow ? say : progress)(`server data, proxy logs and backups go to ${state.root} (${state.redirected})`);
  }

  const missing = await missingPackages();
  if (missing.length > 0) {
    const names = missing.map((p) => p.debian);
    if (process.getuid?.() !== 0) {
      throw new Error(
        `missing system packages: ${names.join(", ")}. Install them with:\n` +
          `  sudo apt-get update && sudo apt-get install -y ${names.join(" ")}\nthen rerun npm run setup.`,
      );
    }
    say(`installing ${names.join(", ")} from Debian (${missing.map((p) => p.what).join("; ")})`);
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    await $({ env, stdio: ["ignore", "inherit", "inherit"] })`apt-get update -q`;
    await $({ env, stdio: ["ignore", "inherit", "inherit"] })`apt-get install -y -q --no-install-recommends ${names}`;
    const still = await missingPackages(missing);
    if (still.length > 0) {
      throw new Error(`apt-get finished but these are still missing: ${still.map((p) => p.debian).join(", ")}`);
    }
  } else {
    progress("system packages: postgresql, mariadb-server, redis-server present");
  }

  const sdkVersion = await pinnedSdkVersion(repoRoot);
  let toolchain = await findToolchain(sdkVersion);
  if (!toolchain) {
    say(`no pulumi ${sdkVersion} found; building it from Go modules (one-time, cached)`);
    toolchain = await buildToolchain(sdkVersion, say);
  }
  await installShim(toolchain);
  await fs.mkdirp(backendDir());
  progress(`pulumi ${toolchain.version} (${toolchain.source}) in ${toolchain.binDir}`);
  await ensureTestServers(say); // S3/GCS protocol servers for the backup-store tests (Go modules, cached)
  return toolchain;
}

if (require.main === module) {
  setup({ quiet: process.argv.includes("--quiet") }).catch((err: Error) => {
    console.error(`[setup] failed: ${err.message}`);
    console.error("[setup] fix the cause above and rerun `npm run setup`; it resumes where it can.");
    process.exit(1);
  });
}
