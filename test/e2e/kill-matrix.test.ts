/**
 * The kill matrix: a real `pulumi up` of a move, SIGKILLed (CLI, engine, language host, provider
 * plugins and their children at once) at every step boundary of the move, then the next
 * `pulumi up`. Clients write through both proxies the whole time. After each case:
 * the next `up` succeeds and says what it found, a preview shows no changes, the catalog routes the
 * tenant database to exactly one server (the new placement) with no open migration and no pause,
 * no replication object or temporary login is left on any server, the copy moved away from is
 * fenced, and every write acknowledged so far is on the final server; clients saw no error.
 *
 * Kill points are deterministic: TENANTFLEET_STOP_AT makes the provider freeze at that step
 * (dynamic-providers/migration/stop-points.ts) and report it; the test then kills the whole tree.
 * The moving tenant alternates between a shared and a dedicated server, so both directions (and
 * the creation and removal of the dedicated server) are crossed. Two more cases run
 * `pulumi refresh` after the kill, before and after the commit.
 *
 * An engine plugs in with a KillMatrixEngine (test/fixtures/kill-matrix/).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, promises as fs, readFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { Client } from "pg";
import { setup } from "../../scripts/setup";
import { clearStaleLocks, pulumiOk, runPulumi, type PulumiRun } from "../../scripts/lib/pulumi-cli";
import { repoRoot } from "../../scripts/lib/pulumi-env";
import type { Toolchain } from "../../scripts/lib/toolchain";
import { MOVE_STEPS, type MoveStep } from "../../dynamic-providers/migration/stop-points";
import { writeLocalStackConfig } from "../../scripts/lib/local-stack-config";
import { killTree } from "../fixtures/process-tree";
import type { KillMatrixEngine, Load, RouteRow, ServerAccess } from "../fixtures/kill-matrix/engine";
import { postgres } from "../fixtures/kill-matrix/postgres";
import { mysqlEngine } from "../fixtures/kill-matrix/mysql";
import { redisEngine } from "../fixtures/kill-matrix/redis";
import { serverNameOf } from "../../components/fleet-plan";

const engines: KillMatrixEngine[] = [postgres, mysqlEngine, redisEngine];

/** The lease of a pause (the orchestrator's default): how long a frozen run can hold clients. */
const LEASE_MS = 10_000;

type Placement = { isolation: "shared" | "dedicated"; region: string };
const SHARED: Placement = { isolation: "shared", region: "eu-west" };
const DEDICATED: Placement = { isolation: "dedicated", region: "eu-west" };

interface Case {
  step: MoveStep;
  refresh?: boolean;
}
const cases: Case[] = [...MOVE_STEPS.map((step) => ({ step })), { step: "sync", refresh: true }, { step: "after-fence", refresh: true }];

/** Steps at which the catalog has committed the move (the next run finishes it rather than redoing it). */
const COMMITTED: ReadonlySet<MoveStep> = new Set(["after-commit", "after-switch", "after-cleanup", "after-fence", "done"]);

interface Outputs {
  tenantDatabases: Record<string, Record<string, { server: string; epoch: number }>>;
  fleet: { tenants: Record<string, Record<string, { connectionString: string }>> };
  servers: Record<string, Omit<ServerAccess, "name"> & { engine: string }>;
  catalogUrl: string;
}

for (const engine of engines) {
  describe(`kill matrix (${engine.engine}): a \`pulumi up\` killed at any step of a move converges on the next run`, () => {
    const stack = `e2e-kill-${engine.engine}-${randomBytes(3).toString("hex")}`;
    const stackFile = path.join(repoRoot, "stacks", `Pulumi.${stack}.yaml`);
    const scratch = mkdtempSync(path.join(os.tmpdir(), "tf-kill-"));
    const key = { tenant: "acme", database: "app" };
    let tc: Toolchain;
    let out: Outputs;
    let load: Load;
    let placement = SHARED;
    const serverOf = (p: Placement) => serverNameOf({ engine: engine.engine, ...p, ...key });

    const writeConfig = (p: Placement) =>
      writeLocalStackConfig(stackFile, {
        acme: { databases: { app: { engine: engine.engine, ...p, ...engine.databaseSettings } } },
        globex: { databases: { app: { engine: engine.engine, isolation: "shared", region: "eu-west" } } },
      });
    /** One CLI command; its duration goes to the log (where a case's minutes go, on CI too). */
    const pulumi = async (args: string[]) => {
      const t = Date.now();
      const r = await pulumiOk(tc, [...args, "--stack", stack, "--non-interactive"]);
      console.log(`${stack}: pulumi ${args.join(" ")}: ${((Date.now() - t) / 1000).toFixed(1)} s`);
      return r;
    };
    const outputs = async (): Promise<Outputs> => JSON.parse((await pulumi(["stack", "output", "--json", "--show-secrets"])).stdout);
    const server = (name: string): ServerAccess => ({ name, ...out.servers[name]! });

    async function catalog<T>(sql: string, params: unknown[] = []): Promise<T[]> {
      const c = new Client({ connectionString: out.catalogUrl });
      await c.connect();
      try {
        return (await c.query(sql, params)).rows as T[];
      } finally {
        await c.end();
      }
    }

    async function expectNoChanges(): Promise<void> {
      const r = JSON.parse((await pulumi(["preview", "--json"])).stdout) as { steps: Array<{ op: string; urn: string }> };
      expect(r.steps.filter((s) => s.op !== "same").map((s) => `${s.op} ${s.urn.split("::").pop()}`)).toEqual([]);
    }

    /** Start `pulumi up` with a stop point; resolve once the provider froze there, after killing the tree. */
    async function upKilledAt(step: MoveStep): Promise<{ killedAt: number; pids: number[] }> {
      const stopFile = path.join(scratch, `stop-${step}-${Date.now()}`);
      let pid: number | undefined;
      let ended: PulumiRun | undefined;
      const started = Date.now();
      // --skip-preview: the update plans the same steps; the preview beforehand is one program run more.
      const run = runPulumi(tc, ["up", "--yes", "--skip-preview", "--stack", stack, "--non-interactive"], {
        env: { TENANTFLEET_STOP_AT: step, TENANTFLEET_STOP_FILE: stopFile },
        onSpawn: (child) => (pid = child.pid),
      }).then((r) => (ended = r));
      for (const end = Date.now() + 240_000; !existsSync(stopFile); ) {
        if (ended) throw new Error(`pulumi up ended (exit ${ended.code}) before reaching the stop point ${step}:\n${(ended.stdout + ended.stderr).slice(-3000)}`);
        if (Date.now() > end) throw new Error(`pulumi up never reached the stop point ${step}`);
        await sleep(20);
      }
      // Kill first: a failed check must not leave a frozen `pulumi up` holding the stack's lock.
      const pids = killTree(pid!);
      const killedAt = Date.now();
      console.log(`${stack}: pulumi up to the stop point ${step}: ${((killedAt - started) / 1000).toFixed(1)} s`);
      await run;
      expect(readFileSync(stopFile, "utf8")).toMatch(new RegExp(`^${step} \\d+`));
      return { killedAt, pids };
    }

    async function routeRows(): Promise<Array<RouteRow & { status: string }>> {
      return catalog("select server, backend_database as \"backendDatabase\", epoch::int, status from tenantfleet.tenant_databases where tenant = $1 and database = $2", [key.tenant, key.database]);
    }

    beforeAll(async () => {
      tc = await setup({ quiet: true });
      await writeConfig(SHARED);
      await pulumiOk(tc, ["stack", "init", stack, "--non-interactive"]);
      await pulumi(["up", "--yes"]);
      out = await outputs();
      await engine.seed(out.fleet.tenants.acme!.app!.connectionString);
      load = await engine.startLoad(out.fleet.tenants.acme!.app!.connectionString);
    }, 600_000);

    afterAll(async () => {
      await load?.stop().catch(() => undefined);
      if (tc) {
        await clearStaleLocks();
        await runPulumi(tc, ["destroy", "--yes", "--stack", stack, "--non-interactive"]);
        await runPulumi(tc, ["stack", "rm", "--yes", "--force", stack, "--non-interactive"]);
      }
      await fs.rm(stackFile, { force: true });
      await fs.rm(scratch, { recursive: true, force: true });
    }, 300_000);

    const full = process.env.TENANTFLEET_KILL_MATRIX === "full" || !engine.ciSteps;
    for (const c of cases.filter((c) => full || engine.ciSteps!.includes(c.step))) {
      it(`killed at ${c.step}${c.refresh ? ", then `pulumi refresh`" : ""}: the next \`pulumi up\` converges`, async () => {
        if (engine.copyOnlySteps?.includes(c.step) && placement !== SHARED) {
          // A move back to the copy kept current on the shared server would have no such step.
          await writeConfig(SHARED);
          await pulumi(["up", "--yes", "--skip-preview"]);
          placement = SHARED;
        }
        const from = placement;
        const to = from === SHARED ? DEDICATED : SHARED;
        const [before] = await routeRows();
        expect(before!.server).toBe(serverOf(from));
        await writeConfig(to);

        const { killedAt } = await upKilledAt(c.step);
        // The killed CLI's lock is recognised as stale (its process is gone) and removed.
        const locks = await clearStaleLocks();
        expect(locks.map((l) => l.stack)).toEqual([path.join("organization", "tenantfleet", stack)]);

        const committed = COMMITTED.has(c.step);
        const [atKill] = await routeRows();
        expect(atKill!.server).toBe(serverOf(committed ? to : from));

        if (c.refresh) {
          const r = await pulumi(["refresh", "--yes"]);
          const state = JSON.parse((await pulumi(["stack", "export", "--show-secrets"])).stdout) as { deployment: { resources: Array<{ urn: string; outputs?: Record<string, unknown> }> } };
          const res = state.deployment.resources.find((x) => x.urn.endsWith("::acme-app") && x.urn.includes("TenantDatabase"))!;
          expect(res.outputs).toMatchObject({ serverName: atKill!.server, epoch: atKill!.epoch, backendDatabase: atKill!.backendDatabase });
          if (committed) expect(r.stdout).toMatch(/an interrupted run committed that move; the state now says so/);
        }

        const up = await pulumi(["up", "--yes", "--skip-preview"]);
        const text = up.stdout + up.stderr;
        if (committed) {
          expect(text).toMatch(/found migration \d+ (finished|stopped during \w+) after its cutover committed .*: finishing it/);
        } else if (c.refresh || c.step !== "after-preflight") {
          expect(text).toMatch(/found migration \d+ \(→ [\w-]+\) interrupted during \w+, before its cutover committed: removing what it left/);
          expect(text).toMatch(/cutover: queries held \d+ ms/);
        } else {
          expect(text).toMatch(/found migration \d+ \(→ [\w-]+\) interrupted during preflight/);
        }
        placement = to;
        await expectNoChanges();
        out = await outputs();

        // The catalog: exactly one route, on the new placement, ready; no open migration, no pause.
        const rows = await routeRows();
        expect(rows).toHaveLength(1);
        expect(rows[0]).toMatchObject({ server: serverOf(to), status: "ready" });
        expect(out.tenantDatabases.acme!.app!.server).toBe(serverOf(to));
        expect(await catalog("select migration_id from tenantfleet.migrations where tenant = $1 and phase not in ('done', 'failed')", [key.tenant])).toEqual([]);
        expect(await catalog("select pause_id from tenantfleet.pauses")).toEqual([]);

        // No replication object or temporary login on any server of the stack but the way back the
        // last move keeps (PostgreSQL: into a copy left on a shared server); the old copy fenced.
        const [last] = await catalog("select record->>'keptCurrentBy' as kept from tenantfleet.migrations where tenant = $1 and phase = 'done' order by migration_id desc limit 1", [key.tenant]);
        const kept = (last as { kept?: string | null } | undefined)?.kept ?? undefined;
        if (engine.engine === "postgres" && from === SHARED) expect(kept).toMatch(/^tf_rev_\d+$/);
        for (const name of Object.keys(out.servers).filter((n) => out.servers[n]!.engine === engine.engine)) {
          expect({ name, left: await engine.leftovers(server(name), kept) }).toEqual({ name, left: [] });
        }
        if (out.servers[serverOf(from)]) expect(await engine.fenced(server(serverOf(from)), before!.backendDatabase)).toBe(true);

        // Clients: no error; once the lease ran out nothing was held long (the next run's own cutover
        // holds queries for a moment); every acknowledged write is on the final server.
        await sleep(300);
        expect(load.errors()).toEqual([]);
        expect(load.maxLatencyBetween(killedAt + LEASE_MS + 1000, Date.now() - 1000)).toBeLessThan(3000);
        const acked = load.acknowledged();
        const stored = new Set(await engine.storedIds(server(serverOf(to)), rows[0]!));
        expect(acked.filter((id) => !stored.has(id))).toEqual([]);
      }, 600_000);
    }
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
