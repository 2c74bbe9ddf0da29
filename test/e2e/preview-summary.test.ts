/**
 * The pull-request summary on real `pulumi preview --json` output: a throw-away local stack (real
 * CLI, real servers) is brought up once, its config edited the way a pull request would, and the
 * preview's JSON fed to the summary, both the pure function and the CLI (`npx tsx
 * scripts/preview-summary.ts`, from a file and from stdin).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile, spawn } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { setup } from "../../scripts/setup";
import { pulumiOk, runPulumi } from "../../scripts/lib/pulumi-cli";
import { repoRoot } from "../../scripts/lib/pulumi-env";
import type { Toolchain } from "../../scripts/lib/toolchain";
import { stateRoot } from "../../dynamic-providers/local-server/state";
import { parsePreviewJson, previewSummaryMarkdown, summarizePreview, type Row } from "../../scripts/lib/preview-summary";
import { writeLocalStackConfig } from "../../scripts/lib/local-stack-config";

const stack = `e2e-prs-${randomBytes(3).toString("hex")}`;
const stackFile = path.join(repoRoot, "stacks", `Pulumi.${stack}.yaml`);
let tc: Toolchain;
let tmp: string;

type Db = { engine: string; isolation: string; region: string };
type Tenants = Record<string, { databases: Record<string, Db> }>;
const sharedPg: Db = { engine: "postgres", isolation: "shared", region: "eu-west" };
const before: Tenants = {
  acme: { databases: { app: sharedPg } },
  globex: { databases: { app: sharedPg, cache: { engine: "redis", isolation: "shared", region: "eu-west" } } },
};
/** The pull request: acme/app and globex/cache (its own Redis instance) → dedicated (live migrations),
 * initech/app added, globex/app removed. */
const after: Tenants = {
  acme: { databases: { app: { ...sharedPg, isolation: "dedicated" } } },
  globex: { databases: { cache: { engine: "redis", isolation: "dedicated", region: "eu-west" } } },
  initech: { databases: { app: sharedPg } },
};

/** Rewrite the config of the temporary stack, keeping the encryption salt Pulumi added. */
async function writeConfig(t: Tenants): Promise<void> {
  await writeLocalStackConfig(stackFile, t);
}

const pulumi = (args: string[]) => pulumiOk(tc, [...args, "--stack", stack, "--non-interactive"]);

/** `pulumi preview --json`, saved to a file for the CLI; a failed preview still prints its JSON. */
async function previewJson(file: string): Promise<{ code: number; text: string; path: string }> {
  const r = await runPulumi(tc, ["preview", "--json", "--stack", stack, "--non-interactive"]);
  const p = path.join(tmp, file);
  await fs.writeFile(p, r.stdout);
  return { code: r.code, text: r.stdout, path: p };
}

/** The CLI as a user runs it: `npx tsx scripts/preview-summary.ts [file]`, or with the JSON on stdin. */
async function cli(args: string[], stdin?: string): Promise<{ code: number; stdout: string }> {
  if (stdin === undefined) {
    const r = await promisify(execFile)("npx", ["tsx", "scripts/preview-summary.ts", ...args], { cwd: repoRoot });
    return { code: 0, stdout: r.stdout };
  }
  return new Promise((resolve, reject) => {
    const child = spawn("npx", ["tsx", "scripts/preview-summary.ts", ...args], { cwd: repoRoot, stdio: ["pipe", "pipe", "ignore"] });
    let stdout = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code: code ?? -1, stdout }));
    child.stdin.end(stdin);
  });
}

beforeAll(async () => {
  tc = await setup({ quiet: true });
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), "tenantfleet-prs-"));
  await writeConfig(before);
  await pulumiOk(tc, ["stack", "init", stack, "--non-interactive"]);
  await pulumi(["up", "--yes", "--skip-preview"]);
});

afterAll(async () => {
  if (tc) {
    await runPulumi(tc, ["destroy", "--yes", "--skip-preview", "--stack", stack, "--non-interactive"]);
    await runPulumi(tc, ["stack", "rm", "--yes", "--force", "--stack", stack, "--non-interactive"]);
  }
  await fs.rm(stackFile, { force: true });
  await fs.rm(path.join(stateRoot(), stack), { recursive: true, force: true });
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe(`preview summary on real preview JSON (${stack})`, () => {
  it("a preview with no changes summarises as no tenant changes", async () => {
    const p = await previewJson("unchanged.json");
    expect(p.code).toBe(0);
    const s = summarizePreview(parsePreviewJson(p.text));
    expect(s).toMatchObject({ stack, failed: false, rows: [], warnings: [], notes: [], other: [] });
    expect(previewSummaryMarkdown(p.text)).toBe(`### tenantfleet preview of stack \`${stack}\`\n\nNo tenant changes.\n`);
  });

  it("a pull request's tier changes: a migration, servers added and removed, a create, a delete, and loud warnings", async () => {
    await writeConfig(after);
    const p = await previewJson("changed.json");
    expect(p.code).toBe(0);
    const json = parsePreviewJson(p.text);
    // What the summary relies on, as the real CLI writes it: the migration is an update whose
    // oldState has the current placement and whose newState has the new one.
    const update = json.steps!.find((s) => s.op === "update" && s.urn.endsWith("::acme-app"))!;
    expect(update.oldState?.outputs).toMatchObject({ serverName: "shared-postgres-eu-west", isolation: "shared", region: "eu-west" });
    expect(update.newState?.inputs).toMatchObject({ serverName: "dedicated-acme-app-eu-west", isolation: "dedicated", region: "eu-west" });
    expect(update.newState?.inputs?.plan).toMatch(/^migrate shared-postgres-eu-west \(shared, eu-west\) → dedicated-acme-app-eu-west \(dedicated, eu-west\): PostgreSQL logical replication/);

    const s = summarizePreview(json);
    const row = (tenant: string, database: string, engine: string, from: string, to: string, action: Row["action"]): Row => ({ tenant, database, engine, from, to, action });
    expect(s.rows).toEqual([
      row("acme", "app", "postgres", "shared-postgres-eu-west (shared, eu-west)", "dedicated-acme-app-eu-west (dedicated, eu-west)", "migrate"),
      row("acme", "app", "postgres", "—", "dedicated-acme-app-eu-west (dedicated, eu-west)", "server added"),
      row("globex", "app", "postgres", "shared-postgres-eu-west (shared, eu-west)", "—", "delete"),
      row("globex", "cache", "redis", "shared-redis-eu-west--globex-cache (shared, eu-west)", "dedicated-globex-cache-eu-west (dedicated, eu-west)", "migrate"),
      row("globex", "cache", "redis", "—", "dedicated-globex-cache-eu-west (dedicated, eu-west)", "server added"),
      row("initech", "app", "postgres", "—", "shared-postgres-eu-west (shared, eu-west)", "create"),
      row("—", "—", "redis", "shared-redis-eu-west (shared, eu-west)", "—", "server removed"),
    ]);
    expect(s.warnings).toEqual([
      "⚠️ **globex/app (postgres) is deleted**: its database and login role are dropped from shared-postgres-eu-west after a safety backup (`pg_dump`) into the platform's backup store; its route leaves the catalog.",
    ]);
    expect(s.notes).toEqual([]);
    expect(s.other).toEqual([]);

    const md = previewSummaryMarkdown(p.text);
    console.log(`\n${md}`);
    expect(md).toContain("\n2 tenant databases migrate, 1 tenant database created, 1 tenant database deleted, 2 servers added, 1 server removed.\n");
    expect(md).toContain(
      [
        "| tenant | database | engine | from → to | action |",
        "|---|---|---|---|---|",
        "| acme | app | postgres | shared-postgres-eu-west (shared, eu-west) → dedicated-acme-app-eu-west (dedicated, eu-west) | migrate |",
        "| acme | app | postgres | — → dedicated-acme-app-eu-west (dedicated, eu-west) | server added |",
        "| globex | app | postgres | shared-postgres-eu-west (shared, eu-west) → — | delete |",
        "| globex | cache | redis | shared-redis-eu-west--globex-cache (shared, eu-west) → dedicated-globex-cache-eu-west (dedicated, eu-west) | migrate |",
        "| globex | cache | redis | — → dedicated-globex-cache-eu-west (dedicated, eu-west) | server added |",
        "| initech | app | postgres | — → shared-postgres-eu-west (shared, eu-west) | create |",
        "| — | — | redis | shared-redis-eu-west (shared, eu-west) → — | server removed |",
      ].join("\n"),
    );
    expect(md).toContain("**Destructive changes: review before merging**");

    // The CLI prints the same Markdown, from a file and from stdin.
    expect(await cli([p.path])).toEqual({ code: 0, stdout: md });
    expect(await cli([], p.text)).toEqual({ code: 0, stdout: md });
  });

  it("a config error: the summary shows the preview's diagnostics instead of a table", async () => {
    await writeConfig({ ...after, initech: { databases: { app: { ...sharedPg, engine: "oracle" } } } });
    const p = await previewJson("failed.json");
    expect(p.code).not.toBe(0);
    const s = summarizePreview(parsePreviewJson(p.text));
    expect(s.failed).toBe(true);
    const md = (await cli([p.path, "--stack", stack])).stdout;
    expect(md).toMatch(new RegExp(`^### tenantfleet preview of stack \`${stack}\`: failed\n`));
    expect(md).toContain('tenantfleet:tenants.initech.databases.app.engine: tenant "initech", database "app": engine must be one of');
    expect(md).not.toContain("| tenant |");
    await writeConfig(after);
  });
});
