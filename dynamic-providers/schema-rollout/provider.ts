/**
 * SchemaRollout: applies a database name's pending migration files to every tenant database of
 * that name (rollout.ts's order: canary, then batches capped per server). It runs after the
 * TenantDatabases of the name (it depends on them): a tenant database moved in the same run gets
 * the files after its cutover, on its new server, and a move never sees a schema change midway.
 *
 * The tenant databases' history tables are the truth about what is applied; the catalog's
 * tenant_schemas mirrors them for `npm run status`. A failed rollout fails the update naming each
 * tenant database and its error: those that succeeded stay migrated, and the next `up` starts
 * again where it stopped (their history says what is left).
 */
import type * as pulumi from "@pulumi/pulumi";
import { loadRoutes, type Route } from "../../proxy/catalog/routes";
import { withCatalog } from "../control-catalog/connect";
import { progressLog } from "../progress";
import { bastionOf, throughBastion } from "../tunnel/ssh-tunnel";
import { loadSchemaSet, recordTenantSchemas } from "./catalog";
import { schemaApplier } from "./engines";
import { changedAppliedFiles, rolloutPlan, sameRefs } from "./plan";
import { runRollout } from "./rollout";
import type { SchemaRolloutInputs, SchemaRolloutOutputs } from "./types";

/** Everything but the words and the URN: a change of any of it is an update. */
const material = (i: Partial<SchemaRolloutInputs>) => JSON.stringify([i.database, i.engine, i.files, [...(i.tenants ?? [])].sort(), i.policy, i.servers, i.serverPasswords, i.catalog, i.catalogPassword, i.bastion]);

function checkInputs(news: SchemaRolloutInputs): string[] {
  const p = news.policy;
  const out: string[] = [];
  if (!p || !(p.perServer >= 1) || !(p.parallel >= 1) || !(p.maxFailures >= 0)) out.push("policy needs perServer ≥ 1, parallel ≥ 1 and maxFailures ≥ 0");
  for (const c of p?.canary ?? []) if (!news.tenants.includes(c)) out.push(`canary tenant ${c} has no ${news.database} database`);
  return out;
}

async function roll(i: SchemaRolloutInputs, before: SchemaRolloutOutputs | undefined): Promise<SchemaRolloutOutputs> {
  const log = progressLog(i.resourceUrn);
  const serverTargets = Object.values(i.servers).map((s) => ({ host: s.host, port: s.port }));
  const catalogTarget = { host: i.catalog.host, port: i.catalog.port };
  try {
    return await throughBastion(bastionOf(i), [catalogTarget, ...serverTargets], (t) =>
      withCatalog({ ...i, catalogVia: t.local(catalogTarget) }, async (c) => {
        const set = await loadSchemaSet(c, i.database);
        if (!set || !sameRefs(set.files, i.files)) throw new Error(`the control catalog does not hold ${i.database}'s migration files as this run declares them (its SchemaSet did not run?)`);
        const headName = set.files[set.files.length - 1]?.name ?? null;
        // Tenant databases known to be at this head since the last rollout need no visit.
        const settled = before && sameRefs(before.files, i.files) && before.head === headName ? new Set(before.tenants) : new Set<string>();
        const routes = new Map((await loadRoutes(c)).filter((r) => r.database === i.database).map((r) => [r.tenant, r]));
        const todo = i.tenants.filter((x) => !settled.has(x));
        const missing = todo.filter((x) => !routes.has(x));
        const targets = todo.filter((x) => routes.has(x)).map((x) => ({ tenant: x, server: routes.get(x)!.server, route: routes.get(x)! }));
        const applier = schemaApplier(i.engine);
        const access = (r: Route) => {
          const s = i.servers[r.server];
          if (!s) throw new Error(`it lives on ${r.server}, which this run does not declare (a move of it did not finish?)`);
          return { name: r.server, ...s, adminPassword: i.serverPasswords[r.server]!, via: t.local({ host: s.host, port: s.port }) };
        };
        if (todo.length) log(`${rolloutPlan(i.database, before?.files, i.files, i.tenants.length, i.policy)}: ${todo.length} to check${i.policy.canary.length ? `, canary ${i.policy.canary.join(", ")} first` : ""}, at most ${i.policy.perServer} per server`);
        let lastLine = 0;
        const outcome = await runRollout(
          targets,
          (x) => applier.apply({ server: access(x.route), backendDatabase: x.route.backendDatabase, role: x.route.role }, set.files),
          i.policy,
          (p) => {
            if (Date.now() - lastLine < 2000 && p.done + p.failed < p.total) return;
            lastLine = Date.now();
            log(`${i.database}: ${p.done}/${p.total} tenant databases at ${headName ?? "(no migrations)"}${p.failed ? `, ${p.failed} failed` : ""}`);
          },
        );
        await recordTenantSchemas(c, [
          ...outcome.done.map((d) => ({ tenant: d.tenant, database: i.database, head: d.result.head, error: null })),
          ...outcome.failed.map((f) => ({ tenant: f.tenant, database: i.database, head: null, error: f.error })),
        ]);
        const failed = [...missing.map((x) => ({ tenant: x, error: "no route in the control catalog (its TenantDatabase was not created)" })), ...outcome.failed];
        if (failed.length) {
          const applied = outcome.done.filter((d) => d.result.applied.length).length;
          throw new Error(
            `schema rollout of ${i.database} to ${headName} failed on ${failed.length} tenant database${failed.length > 1 ? "s" : ""}:\n` +
              failed.map((f) => `  ${f.tenant}: ${f.error}`).join("\n") +
              `\n${outcome.done.length} reached ${headName} (${applied} migrated now)${outcome.skipped.length ? `, ${outcome.skipped.length} not started (${outcome.skipped.slice(0, 10).join(", ")}${outcome.skipped.length > 10 ? ", …" : ""})` : ""}${outcome.stopped ? `; ${outcome.stopped}` : ""}.` +
              `\nThose that reached it stay migrated; fix the cause and run \`pulumi up\` again: it continues where this stopped.`,
          );
        }
        const migrated = outcome.done.filter((d) => d.result.applied.length).length;
        if (todo.length) log(`${i.database}: every tenant database at ${headName ?? "(no migrations)"} (${migrated} migrated now)`);
        return { ...i, head: headName };
      }),
    );
  } finally {
    await log.flush();
  }
}

export const provider: pulumi.dynamic.ResourceProvider = {
  async check(olds: Partial<SchemaRolloutInputs>, news: SchemaRolloutInputs) {
    const problems = checkInputs(news);
    if (problems.length) return { failures: problems.map((reason) => ({ property: "policy", reason: `database ${news.database}: ${reason}` })) };
    const before = olds && Array.isArray(olds.files) ? olds.files : undefined;
    // The last successful rollout applied `before` to every tenant database: none of it may change
    // (refused here, at preview). A file only some took (a rollout that failed after them) is
    // refused by each of those tenant databases' history at `up`, naming it.
    const edited = before ? changedAppliedFiles(before, news.files) : [];
    if (edited.length) return { failures: edited.map((reason) => ({ property: "files", reason: `database ${news.database}: ${reason}` })) };
    return { inputs: { ...news, plan: rolloutPlan(news.database, before, news.files, news.tenants.length, news.policy) } };
  },
  async diff(_id, olds: SchemaRolloutOutputs, news: SchemaRolloutInputs) {
    return { changes: material(olds) !== material(news), replaces: [], deleteBeforeReplace: false };
  },
  async create(i: SchemaRolloutInputs) {
    return { id: i.database, outs: await roll(i, undefined) };
  },
  async update(_id, olds: SchemaRolloutOutputs, news: SchemaRolloutInputs) {
    return { outs: await roll(news, olds) };
  },
  async delete() {
    // Nothing to undo: migrations stay applied in the tenant databases.
  },
};
