#!/usr/bin/env -S npx tsx
/**
 * npm run bench:stack — how a stack of N shared PostgreSQL tenant databases plans and applies:
 * for each size, on a stack of its own (real CLI, real servers and proxies, the file backend):
 *   1. `pulumi up --yes` from empty;
 *   2. a no-change `pulumi preview --expect-no-changes`;
 *   3. one tenant edited to `dedicated`, `pulumi up --yes` (a live migration);
 *   4. diagnostic: the same tenant back to `shared` with PULUMI_SKIP_CHECKPOINTS=true (what the
 *      checkpoints cost: 3 and 4 are the same kind of move, one writing the state after every step);
 *   5. the state: bytes in total and per resource type, one TenantDatabase field by field;
 *   6. `pulumi destroy`, the stack removed.
 * With --empty-without-checkpoints, before 1: `up` from empty with PULUMI_SKIP_CHECKPOINTS=true and
 * `destroy` (diagnostic: what the checkpoints cost of an `up` from empty; the rest is the program,
 * the engine and the provider calls).
 *
 *   --tenants <n,…>    sizes (default 250,500,1000)
 *   --no-save          do not write bench/results/stack-<time>.json
 *   --keep             leave the last stack up (its name is printed)
 *
 * Progress goes to stderr; the result JSON to stdout (and the results file).
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, promises as fs, statSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { setup } from "./setup";
import { pulumiOk, runPulumi } from "./lib/pulumi-cli";
import { backendDir, repoRoot } from "./lib/pulumi-env";
import { writeLocalStackConfig } from "./lib/local-stack-config";
import { resourceBreakdown, stateSizes, type StackExport } from "./lib/stack-state";
import { TENANT_DATABASE_TYPE } from "../dynamic-providers/tenant-database";
import type { Toolchain } from "./lib/toolchain";

const { values } = parseArgs({
  options: {
    tenants: { type: "string", default: "250,500,1000" },
    "no-save": { type: "boolean", default: false },
    keep: { type: "boolean", default: false },
    "empty-without-checkpoints": { type: "boolean", default: false },
  },
});
const sizes = values.tenants.split(",").map((s) => Number(s.trim()));
if (sizes.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`--tenants must be whole numbers above 0, got ${values.tenants}`);
const progress = (m: string) => process.stderr.write(`[bench:stack] ${new Date().toISOString().slice(11, 19)} ${m}\n`);

const GOALS = { changeUpSeconds: 60, noChangePreviewSeconds: 30, tenantDatabaseStateBytes: 3 * 1024, perTenantGrowth: 1.25 };

const tenantName = (i: number) => `t${String(i).padStart(5, "0")}`;

/** N tenants, one shared PostgreSQL database each in eu-west; `dedicated` the one moved. */
function writeConfig(file: string, n: number, dedicated?: string): Promise<void> {
  const tenants: Record<string, unknown> = {};
  for (let i = 1; i <= n; i++) {
    const t = tenantName(i);
    tenants[t] = { databases: { app: { engine: "postgres", isolation: t === dedicated ? "dedicated" : "shared", region: "eu-west" } } };
  }
  return writeLocalStackConfig(file, tenants);
}

async function timed<T>(what: string, fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  progress(`${what} …`);
  const t = performance.now();
  const value = await fn();
  const seconds = Math.round((performance.now() - t) / 10) / 100;
  progress(`${what}: ${seconds} s`);
  return { seconds, value };
}

async function oneSize(tc: Toolchain, n: number, keep: boolean) {
  const stack = `bench-stack-${n}-${randomBytes(3).toString("hex")}`;
  const file = path.join(repoRoot, "stacks", `Pulumi.${stack}.yaml`);
  const pulumi = (args: string[], env?: NodeJS.ProcessEnv) => pulumiOk(tc, [...args, "--stack", stack, "--non-interactive"], { env });
  const moved = tenantName(1);
  await writeConfig(file, n);
  await pulumi(["stack", "init"]);
  try {
    let upFromEmptySkipCheckpointsSeconds: number | undefined;
    if (values["empty-without-checkpoints"]) {
      upFromEmptySkipCheckpointsSeconds = (await timed(`${n} tenants: up from empty with PULUMI_SKIP_CHECKPOINTS=true (diagnostic)`, () => pulumi(["up", "--yes"], { PULUMI_SKIP_CHECKPOINTS: "true" }))).seconds;
      await timed(`${n} tenants: destroy`, () => pulumi(["destroy", "--yes"]));
    }
    const up = await timed(`${n} tenants: up from empty`, () => pulumi(["up", "--yes"]));
    const preview = await timed(`${n} tenants: no-change preview`, () => pulumi(["preview", "--expect-no-changes"]));
    await writeConfig(file, n, moved);
    const change = await timed(`${n} tenants: ${moved} → dedicated, up`, () => pulumi(["up", "--yes"]));
    const exported = JSON.parse((await pulumi(["stack", "export"])).stdout) as StackExport;
    const checkpointFile = path.join(backendDir(), ".pulumi", "stacks", "tenantfleet", `${stack}.json`);
    const checkpointBytes = existsSync(checkpointFile) ? statSync(checkpointFile).size : undefined;
    const movedResource = exported.deployment.resources!.find((r) => r.type === TENANT_DATABASE_TYPE && r.outputs?.tenant === moved)!;
    const lastMigration = movedResource.outputs?.lastMigration as { durationMs?: number; pauseMs?: number; status?: string } | undefined;
    await writeConfig(file, n);
    const back = await timed(`${n} tenants: ${moved} → shared, up with PULUMI_SKIP_CHECKPOINTS=true (diagnostic)`, () => pulumi(["up", "--yes"], { PULUMI_SKIP_CHECKPOINTS: "true" }));
    const sizesOf = stateSizes(exported);
    const sample = exported.deployment.resources!.find((r) => r.type === TENANT_DATABASE_TYPE && r.outputs?.tenant === tenantName(2))!;
    const result = {
      tenants: n,
      upFromEmptySeconds: up.seconds,
      upFromEmptySecondsPerTenant: Math.round((up.seconds / n) * 1000) / 1000,
      ...(upFromEmptySkipCheckpointsSeconds !== undefined ? { upFromEmptySkipCheckpointsSeconds } : {}),
      noChangePreviewSeconds: preview.seconds,
      changeUpSeconds: change.seconds,
      changeUpMigration: lastMigration ? { status: lastMigration.status, durationMs: lastMigration.durationMs, pauseMs: lastMigration.pauseMs } : undefined,
      changeUpSkipCheckpointsSeconds: back.seconds,
      checkpointBytes,
      state: sizesOf,
      tenantDatabaseBytes: sizesOf.byType[TENANT_DATABASE_TYPE]!.medianBytes,
      tenantDatabaseBreakdown: resourceBreakdown(sample),
    };
    return { stack, result };
  } finally {
    if (!keep) {
      await timed(`${n} tenants: destroy`, () => runPulumi(tc, ["destroy", "--yes", "--stack", stack, "--non-interactive"]));
      await runPulumi(tc, ["stack", "rm", "--yes", "--force", "--stack", stack, "--non-interactive"]);
      await fs.rm(file, { force: true });
    }
  }
}

async function main(): Promise<void> {
  const tc = await setup({ quiet: true });
  const runs = [];
  for (const [i, n] of sizes.entries()) {
    const { stack, result } = await oneSize(tc, n, values.keep && i === sizes.length - 1);
    runs.push(result);
    if (values.keep && i === sizes.length - 1) progress(`kept stack ${stack}`);
  }
  const largest = runs.at(-1)!;
  const smallest = runs[0]!;
  const growth = largest.upFromEmptySecondsPerTenant / smallest.upFromEmptySecondsPerTenant;
  const out = {
    benchmark: "stack",
    at: new Date().toISOString(),
    command: `npm run bench:stack -- --tenants ${values.tenants}${values["empty-without-checkpoints"] ? " --empty-without-checkpoints" : ""}`,
    method:
      "each size on a stack of its own: N tenants with one shared PostgreSQL database each (one region, 2 proxies), `pulumi up --yes` from empty (preview included), " +
      "`pulumi preview --expect-no-changes`, one tenant → dedicated and `pulumi up --yes` (a live migration, checkpoints on), then back with PULUMI_SKIP_CHECKPOINTS=true (diagnostic only); state from `pulumi stack export` after the change",
    runs,
    goals: {
      [`changeUp≤${GOALS.changeUpSeconds}s@${largest.tenants}`]: largest.changeUpSeconds <= GOALS.changeUpSeconds,
      [`noChangePreview≤${GOALS.noChangePreviewSeconds}s@${largest.tenants}`]: largest.noChangePreviewSeconds <= GOALS.noChangePreviewSeconds,
      [`tenantDatabaseState≤${GOALS.tenantDatabaseStateBytes}B`]: runs.every((r) => r.tenantDatabaseBytes <= GOALS.tenantDatabaseStateBytes),
      [`upFromEmptyPerTenantFlat(${smallest.tenants}→${largest.tenants} ≤×${GOALS.perTenantGrowth})`]: runs.length > 1 && growth <= GOALS.perTenantGrowth,
    },
    perTenantGrowth: Math.round(growth * 100) / 100,
  };
  const text = JSON.stringify(out, null, 2);
  process.stdout.write(text + "\n");
  if (!values["no-save"]) {
    const dir = path.join(repoRoot, "bench", "results");
    mkdirSync(dir, { recursive: true });
    const f = path.join(dir, `stack-${out.at.replace(/:/g, "-").replace(/\.\d+Z$/, "Z")}.json`);
    writeFileSync(f, text + "\n");
    progress(`wrote ${path.relative(repoRoot, f)}`);
  }
}

main().catch((e) => {
  process.stderr.write(`[bench:stack] ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
