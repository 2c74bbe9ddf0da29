/**
 * TenantDatabase: one tenant's database, its role and its route. `update` is a live migration
 * when the server changes (DESIGN.md "A migration"); the catalog, not Pulumi's state, is the
 * truth about where the tenant is, so an update interrupted after the cutover commit converges
 * on the next run instead of migrating twice.
 */
import type * as pulumi from "@pulumi/pulumi";
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import type { Client } from "pg";
import { catalogConfig, withCatalog, type CatalogAccess } from "../control-catalog/connect";
import { loadSchemaSet, recordTenantSchemas } from "../schema-rollout/catalog";
import { schemaApplier } from "../schema-rollout/engines";
import type { ApplyResult, SchemaTarget } from "../schema-rollout/types";
import { clientDatabaseName, deleteRoute, loadRoute, setRoutePool, upsertRoute, type Route } from "../../proxy/catalog/routes";
import { engineOf, type ServerAccess } from "./engines";
import { stateRoot } from "../local-server/state";
import { finishCommitted, lastMigrationTo, migrate, type MigrationRecord } from "../migration/orchestrator";
import { backupStore, storeOf, type BackupBucket } from "../backups/store";
import { prefixed, progressLog } from "../progress";
import { bastionOf, throughBastion } from "../tunnel/ssh-tunnel";
import { checkTenantDatabase, expiry, planTenantDatabase, poolOfRoute, refreshedOutputs } from "./plan";
import { accessChanged, fromState, isEarlierState, takeAccess, toState, withAccess, type StoredInputs, type StoredOutputs } from "./state";
import type { RetainedCopy, ServerRef, TenantDatabaseInputs, TenantDatabaseOutputs } from "./types";

const access = (s: ServerRef, adminPassword: string): ServerAccess => ({ ...s, adminPassword });
const serverOf = (i: Pick<TenantDatabaseInputs, "serverName" | "server">): ServerRef => ({ ...i.server, name: i.serverName });

/**
 * Run `fn` with the catalog and `servers` reachable from this process: directly on the local
 * platform, through one SSH tunnel over the bastion on the cloud ones. `fn` gets the inputs with
 * the catalog's tunnel end, and a function that gives a server access its tunnel end.
 */
async function reaching<I extends TenantDatabaseInputs, T>(
  i: I,
  servers: ServerRef[],
  fn: (i: I & CatalogAccess, via: (s: ServerAccess) => ServerAccess) => Promise<T>,
): Promise<T> {
  const targets = [i.catalog, ...servers].map((s) => ({ host: s.host, port: s.port }));
  return throughBastion(bastionOf(i), targets, (t) => fn({ ...i, catalogVia: t.local(i.catalog) }, (s) => ({ ...s, via: t.local(s) })));
}

/** The platform's backup store and free-disk probe (the local platform: a folder under the state dir). */
function platformOf(i: Pick<TenantDatabaseInputs, "platform" | "stack">) {
  return {
    backupDir: path.join(stateRoot(), i.stack, "backups"),
    freeBytes: async () => {
      const s = await fs.statfs(stateRoot());
      return s.bavail * s.bsize;
    },
  };
}

function routeOf(i: TenantDatabaseInputs, o: Pick<TenantDatabaseOutputs, "role" | "backendDatabase"> & { scramVerifier: string }): Omit<Route, "epoch" | "status"> {
  return {
    tenant: i.tenant, database: i.database, engine: i.engine, role: o.role, scramVerifier: o.scramVerifier,
    server: i.serverName, host: i.server.host, port: i.server.port, backendDatabase: o.backendDatabase, ...poolOfRoute(i.pool),
  };
}

/** Progress of `read` and `delete`, which get the outputs only: on the resource where an earlier
 * version stored its URN there, else on the stack, naming the database (state.ts). */
function storedLog(props: TenantDatabaseOutputs) {
  const log = progressLog(props.resourceUrn);
  return props.resourceUrn ? log : prefixed(clientDatabaseName(props), log);
}

const retainedServers = (copies: RetainedCopy[]): ServerRef[] => copies.flatMap((r) => (r.kind === "fenced_copy" ? [r.server] : []));
type FencedCopy = Extract<RetainedCopy, { kind: "fenced_copy" }>;
const keptCurrent = (copies: RetainedCopy[] | undefined): FencedCopy[] => (copies ?? []).filter((r): r is FencedCopy => r.kind === "fenced_copy" && !!r.keptCurrent);
/** Does `r` read from the live copy `live` (server and database)? */
const readsFrom = (r: FencedCopy, live: { serverName: string; backendDatabase: string }) => r.keptCurrent?.from.server === live.serverName && r.keptCurrent.from.backendDatabase === live.backendDatabase;

/** Drop retained copies past their window (a stream keeping one current ends first). A fenced
 * copy whose server is gone went with it. */
async function sweep(engine: string, expired: RetainedCopy[], log: (m: string, l?: "info" | "warn") => void, via: (s: ServerAccess) => ServerAccess, bucket: BackupBucket | undefined, live?: { server: string; backendDatabase: string; access: ServerAccess }): Promise<void> {
  for (const r of expired) {
    if (r.kind === "backup") {
      await storeOf(r.location, bucket).remove(r.location);
      log(`rollback window over: removed the safety backup ${r.location}`);
      continue;
    }
    if (live && r.server.name === live.server && r.backendDatabase === live.backendDatabase) {
      // The database moved back onto this server under the same name: the copy is the live one now.
      log(`rollback window over: ${r.backendDatabase} on ${r.server.name} is live again (moved back there), so it is kept`);
      continue;
    }
    const ops = engineOf(engine);
    if (r.keptCurrent && ops.stopKeepingCurrent) {
      const fromLive = live && r.keptCurrent.from.server === live.server && r.keptCurrent.from.backendDatabase === live.backendDatabase;
      const problems = await ops.stopKeepingCurrent(r.keptCurrent.stream, {
        copy: { server: via(access(r.server, r.adminPassword)), database: r.backendDatabase },
        ...(fromLive ? { live: { server: live.access, database: live.backendDatabase } } : {}),
      });
      if (problems.length) log(`ending the reverse replication into ${r.backendDatabase} on ${r.server.name}: ${problems.join("; ")}`, "warn");
    }
    try {
      await ops.drop(via(access(r.server, r.adminPassword)), r);
      log(`rollback window over: dropped the fenced copy ${r.backendDatabase} on ${r.server.name}`);
    } catch (e) {
      log(`could not drop the fenced copy ${r.backendDatabase} on ${r.server.name} (${(e as Error).message}); its server is gone or unreachable, so it is forgotten`, "warn");
    }
  }
}

/**
 * A new tenant database brought to its database name's schema head, seed included, when the stack
 * declares migrations for the name (the SchemaSet put them in the catalog before this runs).
 */
async function atSchemaHead(c: Client, i: TenantDatabaseInputs, target: SchemaTarget): Promise<ApplyResult | undefined> {
  if (i.engine === "redis") return undefined;
  const set = await loadSchemaSet(c, i.database);
  if (!set || set.engine !== i.engine) return undefined;
  const log = progressLog(i.resourceUrn);
  try {
    const r = await schemaApplier(set.engine).apply(target, set.files, set.seed ? { seed: set.seed } : {});
    log(`schema: ${r.applied.length ? `${r.applied.length} migration${r.applied.length > 1 ? "s" : ""} applied, at ${r.head}` : `at ${r.head ?? "(no migrations)"}`}${r.seeded ? ", seed applied" : ""}, before the route was published`);
    return r;
  } catch (e) {
    throw new Error(`bringing ${clientDatabaseName(i)} to the ${i.database} schema's head before publishing its route: ${(e as Error).message}`);
  } finally {
    await log.flush();
  }
}

export const provider: pulumi.dynamic.ResourceProvider = {
  async check(olds: Partial<TenantDatabaseInputs>, news: Record<string, unknown>) {
    const r = checkTenantDatabase(olds && Object.keys(olds).length ? olds : undefined, news);
    return "failures" in r ? { failures: r.failures } : { inputs: takeAccess(r.inputs) };
  },

  async diff(_id, stored: StoredOutputs, news: StoredInputs) {
    const olds = fromState(stored);
    const plan = planTenantDatabase(olds, news as TenantDatabaseInputs, new Date());
    // An earlier version's state, or rotated credentials: an update that rewrites the state only.
    const changes = plan.changes || isEarlierState(stored as unknown as Record<string, unknown>) || accessChanged(olds, news);
    return { changes, replaces: [], deleteBeforeReplace: false };
  },

  async create(checked: StoredInputs) {
    const inputs = withAccess(checked);
    const role = clientDatabaseName(inputs);
    const password = randomBytes(24).toString("base64url");
    const ops = engineOf(inputs.engine);
    const scramVerifier = ops.verifier(password);
    const backendDatabase = clientDatabaseName(inputs);
    const route = await reaching(inputs, [serverOf(inputs)], async (i, via) => {
      const server = via(access(serverOf(inputs), inputs.serverAdminPassword));
      await ops.ensure(server, { backendDatabase, role, verifier: scramVerifier });
      // The schema's head (and seed) before the route exists: no application sees it without its tables.
      const schema = await withCatalog(i, (c) => atSchemaHead(c, inputs, { server, backendDatabase, role }));
      return withCatalog(i, async (c) => {
        const r = await upsertRoute(c, { ...routeOf(inputs, { role, scramVerifier, backendDatabase }), status: "ready" });
        if (schema) await recordTenantSchemas(c, [{ tenant: inputs.tenant, database: inputs.database, head: schema.head, error: null }]);
        return r;
      });
    });
    const outs: TenantDatabaseOutputs = {
      ...inputs,
      role,
      password,
      scramVerifier,
      backendDatabase,
      epoch: route.epoch,
      status: "ready",
      lastMigration: null,
      retained: [],
    };
    return { id: `${inputs.tenant}/${inputs.database}`, outs: toState(outs) };
  },

  /** `pulumi refresh`: placement as the catalog has committed it (plan.ts refreshedOutputs). */
  async read(id, stored: StoredOutputs) {
    const props = fromState(stored);
    const log = storedLog(props);
    try {
      const refreshed = await reaching(props, [], (p) =>
        withCatalog(p, async (c) => {
          const route = await loadRoute(c, props);
          if (!route) {
            log(`the control catalog has no route for ${clientDatabaseName(props)}: it was removed outside Pulumi; the state is left as it was (check \`npm run status\`)`, "warn");
            return props;
          }
          if (route.server === props.serverName) return refreshedOutputs(props, route, new Date());
          const last = await lastMigrationTo(c, props, route.server);
          log(`the catalog routes ${clientDatabaseName(props)} to ${route.server} (epoch ${route.epoch}), not ${props.serverName}: an interrupted run committed that move; the state now says so, and the next \`pulumi up\` finishes its cleanup`, "warn");
          return refreshedOutputs(props, route, new Date(), last?.record ? (last.record as MigrationRecord) : undefined);
        }),
      );
      return { id, props: toState(refreshed) };
    } finally {
      await log.flush();
    }
  },

  async update(_id, stored: StoredOutputs, checked: StoredInputs) {
    const olds = fromState(stored);
    const news = withAccess(checked);
    const log = progressLog(news.resourceUrn);
    try {
      const plan = planTenantDatabase(olds, news, new Date());
      if (!plan.changes) {
        // Nothing to do on any server: the state is rewritten (an earlier version's shape, or new credentials).
        return { outs: toState({ ...olds, ...news }) };
      }
      const unfinished = (olds.retained ?? []).filter((r): r is Extract<RetainedCopy, { kind: "fenced_copy" }> => r.kind === "fenced_copy" && !!r.finishMove);
      const outs: TenantDatabaseOutputs = { ...olds, ...news, status: "ready", retained: (olds.retained ?? []).filter((r) => !plan.expired.includes(r)).map(settled) };
      if (!news.pool) delete outs.pool; // removed from the config: back to session mode
      const servers = [serverOf(olds), serverOf(news), ...retainedServers([...plan.expired, ...unfinished, ...keptCurrent(olds.retained)])];
      await reaching(news, servers, async (n, via) => {
        for (const r of unfinished) {
          const record = await finishRefreshedMove(olds, n, r, log, via);
          if (record) outs.lastMigration = record;
          // Finishing it started the way back into the copy it left: the state records that.
          if (record?.keptCurrentBy) {
            const from = { server: news.serverName, backendDatabase: olds.backendDatabase };
            outs.retained = outs.retained.map((x) => (x.kind === "fenced_copy" && x.server.name === r.server.name && x.backendDatabase === r.backendDatabase ? { ...x, keptCurrent: { stream: record.keptCurrentBy!, from } } : x));
          }
        }
        if (plan.migrate) Object.assign(outs, await migrateTo(olds, n, log, via));
        await sweep(news.engine, plan.expired, log, via, news.backupBucket, { server: outs.serverName, backendDatabase: outs.backendDatabase, access: via(access(serverOf(outs), outs.serverAdminPassword)) });
        // The route's server and address come from the catalog's own commit; re-writing them here
        // would only matter when the catalog itself moved.
        await withCatalog(n, async (c) => {
          const r = await loadRoute(c, news);
          if (r) return setRoutePool(c, news, poolOfRoute(news.pool));
          // Removed outside Pulumi: written again, with the role's verifier set anew on its server.
          const ops = engineOf(outs.engine);
          const scramVerifier = ops.verifier(outs.password);
          await ops.ensure(via(access(serverOf(outs), outs.serverAdminPassword)), { backendDatabase: outs.backendDatabase, role: outs.role, verifier: scramVerifier });
          await upsertRoute(c, { ...routeOf(news, { ...outs, scramVerifier }), status: "ready" });
        });
      });
      return { outs: toState(outs) };
    } finally {
      await log.flush();
    }
  },

  async delete(_id, stored: StoredOutputs) {
    const props = fromState(stored);
    const log = storedLog(props);
    try {
      const fenced = (props.retained ?? []).filter((r) => r.kind === "fenced_copy");
      await reaching(props, [serverOf(props), ...retainedServers(fenced)], async (p, via) => {
        const server = via(access(serverOf(props), props.serverAdminPassword));
        const backupDir = platformOf(props).backupDir;
        const file = path.join(backupDir, props.tenant, props.database, `${new Date().toISOString().replace(/[:.]/g, "-")}-deleted.dump`);
        const ops = engineOf(props.engine);
        await ops.dump(server, props.backendDatabase, file);
        const location = await backupStore(props.backupBucket).put(file, path.relative(backupDir, file));
        log(`safety backup before delete: ${location}`);
        await ops.drop(server, props);
        await sweep(props.engine, fenced, log, via, props.backupBucket);
        await withCatalog(p, (c) => deleteRoute(c, props));
      });
    } finally {
      await log.flush();
    }
  },
};

/** A retained copy with its `finishMove` mark removed (the update has finished that move). */
function settled(r: RetainedCopy): RetainedCopy {
  if (r.kind !== "fenced_copy" || !r.finishMove) return r;
  const { finishMove: _done, ...rest } = r;
  return rest;
}

/** Finish a move `pulumi refresh` found committed (its copy is `left`): cleanup and fence. */
async function finishRefreshedMove(
  olds: TenantDatabaseOutputs,
  news: TenantDatabaseInputs & CatalogAccess,
  left: Extract<RetainedCopy, { kind: "fenced_copy" }>,
  log: (m: string, l?: "info" | "warn") => void,
  via: (s: ServerAccess) => ServerAccess,
): Promise<MigrationRecord | undefined> {
  if (olds.serverName !== news.serverName) {
    throw new Error(
      `an interrupted run moved ${clientDatabaseName(news)} to ${olds.serverName} (found by \`pulumi refresh\`), and the config now places it on ${news.serverName}: ` +
        `finish that move first (place it on ${olds.serverName} and run \`pulumi up\`), then change its placement`,
    );
  }
  const route = await withCatalog(news, (c) => loadRoute(c, news));
  if (!route) throw new Error(`the control catalog has no route for ${clientDatabaseName(news)}: it was removed outside Pulumi; run \`pulumi refresh\` and check \`npm run status\``);
  const engine = engineOf(news.engine).migration({
    source: via(access(left.server, left.adminPassword)),
    target: via(access(serverOf(news), news.serverAdminPassword)),
    from: { backendDatabase: left.backendDatabase, role: left.role, verifier: route.scramVerifier },
    targetDatabase: olds.backendDatabase,
  });
  try {
    return await finishCommitted(engine, news, { catalog: catalogConfig(news), log });
  } finally {
    await engine.close();
  }
}

/** The migration step of an update; returns the outputs that change. Exported for the kill test. */
export async function migrateTo(
  olds: TenantDatabaseOutputs,
  news: TenantDatabaseInputs & CatalogAccess,
  log: (m: string, l?: "info" | "warn") => void,
  via: (s: ServerAccess) => ServerAccess = (s) => s,
): Promise<Partial<TenantDatabaseOutputs>> {
  const route = await withCatalog(news, (c) => loadRoute(c, news));
  if (!route) throw new Error(`the control catalog has no route for ${clientDatabaseName(news)}: it was removed outside Pulumi; run \`pulumi refresh\` and check \`npm run status\``);
  const source = via(access(serverOf(olds), olds.serverAdminPassword));
  const target = via(access(serverOf(news), news.serverAdminPassword));
  const platform = platformOf(news);
  const from = { backendDatabase: olds.backendDatabase, role: olds.role, verifier: route.scramVerifier };
  const windowEnd = expiry(new Date(), news.rollbackWindowHours);
  /** The copy left on the old server (kept current from `liveDatabase` when the move says so), and the backup. */
  const keep = (record: Pick<MigrationRecord, "backup" | "keptCurrentBy"> | undefined, liveDatabase: string): RetainedCopy[] => [
    {
      kind: "fenced_copy", server: serverOf(olds), adminPassword: olds.serverAdminPassword, backendDatabase: olds.backendDatabase, role: olds.role, expiresAt: windowEnd,
      ...(record?.keptCurrentBy ? { keptCurrent: { stream: record.keptCurrentBy, from: { server: news.serverName, backendDatabase: liveDatabase } } } : {}),
    },
    ...(record?.backup ? [{ kind: "backup" as const, location: record.backup.location, expiresAt: windowEnd }] : []),
  ];

  if (route.server === news.serverName) {
    // An earlier run committed the cutover and was interrupted before Pulumi saved it: finish it.
    const engine = engineOf(news.engine).migration({ source, target, from, targetDatabase: route.backendDatabase });
    let record: Awaited<ReturnType<typeof finishCommitted>>;
    try {
      record = await finishCommitted(engine, news, { catalog: catalogConfig(news), log });
    } finally {
      await engine.close();
    }
    // The copy now live (a move back to it) is no longer a retained copy.
    const others = (olds.retained ?? []).filter((r) => !(r.kind === "fenced_copy" && r.server.name === news.serverName && r.backendDatabase === route.backendDatabase));
    const retained = await endChains(others, olds, source, news.engine, log, via);
    return { backendDatabase: route.backendDatabase, epoch: route.epoch, ...(record ? { lastMigration: record } : {}), retained: [...retained, ...keep(record, route.backendDatabase)] };
  }
  if (route.server !== olds.serverName) {
    throw new Error(
      `the catalog routes ${clientDatabaseName(news)} to ${route.server} (epoch ${route.epoch}), neither ${olds.serverName} (Pulumi's record) nor ${news.serverName} (the new placement). ` +
        `If an interrupted \`pulumi up\` moved it there, run \`pulumi refresh\` to record that, then \`pulumi up\` again; otherwise the route was changed outside Pulumi. Check \`npm run status\`.`,
    );
  }
  const ops = engineOf(news.engine);
  // A copy this tenant database left on the new server at its last move, kept current since.
  const standby = keptCurrent(olds.retained).find((r) => r.server.name === news.serverName && readsFrom(r, olds) && new Date(r.expiresAt) > new Date());
  const engine = ops.migration({
    source, target, from, targetDatabase: ops.targetDatabase(news, route.epoch + 1, olds.backendDatabase), freeBytes: platform.freeBytes,
    ...(standby ? { standby: { backendDatabase: standby.backendDatabase, stream: standby.keptCurrent!.stream } } : {}),
    // A dedicated server goes away when its tenant database leaves it: no way back into it. Nor
    // without a rollback window: the old copy is dropped at the next \`pulumi up\`. (A copy kept
    // current is the move's safety copy; without one the move takes a dump.)
    wayBack: olds.isolation === "shared" && news.rollbackWindowHours > 0,
  });
  const record = await migrate(engine, { key: news, fromServer: olds.serverName, toServer: news.serverName, epoch: route.epoch }, { catalog: catalogConfig(news), backupDir: platform.backupDir, backups: backupStore(news.backupBucket), log, requestedBy: `pulumi up (${news.stack})` });
  // A copy kept on the target under the name the database now takes there was replaced by this move.
  const superseded = (r: RetainedCopy) => r.kind === "fenced_copy" && r.server.name === news.serverName && r.backendDatabase === engine.target.backendDatabase;
  const retained = await endChains((olds.retained ?? []).filter((r) => !superseded(r)), olds, source, news.engine, log, via);
  return {
    backendDatabase: engine.target.backendDatabase,
    epoch: route.epoch + 1,
    // The copies differed at the cutover (the log says how, and the way back): the output says so too.
    ...(record.verification?.ok === false ? { status: "verify_failed" } : {}),
    lastMigration: record,
    retained: [...retained, ...keep(record, engine.target.backendDatabase)],
  };
}

/**
 * After a move away from `olds`: retained copies (other than the one now live) that were kept
 * current from it read from an old copy now. Their streams end and they are fenced fully; they stay until their window ends, as
 * the database was at this move's cutover. Returns the retained list with them marked so.
 */
async function endChains(
  copies: RetainedCopy[],
  olds: TenantDatabaseOutputs,
  oldLive: ServerAccess,
  engine: string,
  log: (m: string, l?: "info" | "warn") => void,
  via: (s: ServerAccess) => ServerAccess,
): Promise<RetainedCopy[]> {
  const ops = engineOf(engine);
  const out: RetainedCopy[] = [];
  for (const r of copies) {
    if (r.kind !== "fenced_copy" || !r.keptCurrent || !readsFrom(r, olds) || !ops.stopKeepingCurrent) {
      out.push(r);
      continue;
    }
    const copy = via(access(r.server, r.adminPassword));
    const problems = await ops.stopKeepingCurrent(r.keptCurrent.stream, { copy: { server: copy, database: r.backendDatabase }, live: { server: oldLive, database: olds.backendDatabase } });
    await ops.fence?.(copy, r).catch((e) => problems.push((e as Error).message));
    if (problems.length) log(`ending the reverse replication into ${r.backendDatabase} on ${r.server.name}: ${problems.join("; ")}`, "warn");
    else log(`${r.backendDatabase} on ${r.server.name} read from ${olds.serverName}, which this move left: it is no longer kept current (fenced, kept until its window ends)`);
    const { keptCurrent: _ended, ...rest } = r;
    out.push(rest);
  }
  return out;
}
