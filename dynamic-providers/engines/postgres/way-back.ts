/**
 * The way back of a PostgreSQL move: after the cutover the old copy is kept current by logical
 * replication from the new server (as Vitess's reverse workflow does), so moving back within the
 * rollback window is a switch, not a copy.
 *
 * One stream, named `tf_rev_<migration id>`, is a publication in the live database, a logical slot
 * on the live server, a replication login on the live server (commented with the live database,
 * so leftovers are found) and a subscription in the old copy, owned by the old copy's admin. Its
 * life:
 *
 *   prepare  before the pause: all four made; the subscription disabled, without a copy.
 *   mark     in the pause, once the target has applied the source's last write: the live
 *            server's WAL position then is set as the subscription's replication origin
 *            progress in the old copy, so the stream starts there. PostgreSQL 15 subscriptions
 *            cannot filter by origin, so without this the stream would send back the rows the
 *            forward stream applied; after it, only what the tenant writes on the new server.
 *            (Advancing the slot instead costs a logical decoding start, tens of ms, in the
 *            pause; this is one write, made durable in the copy it concerns.)
 *   start    after the commit, once the old copy is fenced against the tenant's login: enabled.
 *   stop     the window ends, the copy is used by a move back, or the tenant moves on elsewhere:
 *            the subscription dropped (and its slot with it), the publication and login too.
 */
import { randomBytes } from "node:crypto";
import { escapeIdentifier as ident, escapeLiteral as literal, type Client } from "pg";
import { dropSlot, dropSubscription, withAdmin, type PgServerAccess } from "./tenant-db";

export const WAY_BACK_PREFIX = "tf_rev_";

/** One side of a stream: a database on a server. */
export interface PgSide {
  server: PgServerAccess;
  database: string;
}

export function wayBackName(migrationId: number): string {
  return `${WAY_BACK_PREFIX}${migrationId}`;
}

function loginComment(liveDatabase: string): string {
  return `tenantfleet way back from ${liveDatabase}`;
}

/** A libpq conninfo value, quoted. */
export function connValue(v: string): string {
  return `'${v.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

/**
 * Everything of stream `name` from `live` into `copy`, the subscription disabled. The slot is
 * made by SQL on the live server, which waits for transactions running there to end (seconds at
 * most on a tenant database's server; never inside the pause).
 */
export async function prepareWayBack(name: string, live: PgSide, copy: PgSide): Promise<void> {
  const password = randomBytes(24).toString("base64url");
  await withAdmin(live.server, "postgres", async (c) => {
    await c.query(`create role ${ident(name)} login replication password ${literal(password)}`);
    await c.query(`comment on role ${ident(name)} is ${literal(loginComment(live.database))}`);
    await c.query(`grant pg_read_all_data to ${ident(name)}`);
    await c.query(`grant connect on database ${ident(live.database)} to ${ident(name)}`);
  });
  await withAdmin(live.server, live.database, async (c) => {
    await c.query(`create publication ${ident(name)} for all tables`);
    await c.query("select pg_create_logical_replication_slot($1, 'pgoutput')", [name]);
  });
  // The address the copy's server reaches the live one at: its own, not a tunnel's end.
  const conninfo = `host=${connValue(live.server.host)} port=${live.server.port} user=${connValue(name)} password=${connValue(password)} dbname=${connValue(live.database)} connect_timeout=10`;
  await withAdmin(copy.server, copy.database, (c) =>
    c.query(
      `create subscription ${ident(name)} connection ${literal(conninfo)} publication ${ident(name)}
       with (enabled = false, create_slot = false, copy_data = false, slot_name = ${literal(name)})`,
    ),
  );
}

/**
 * In the pause, on a connection to the old copy: stream `name` starts at `lsn` (the live server's
 * WAL position once the forward stream applied the last write); what committed before is skipped.
 */
export async function markWayBack(copy: Client, name: string, lsn: string): Promise<void> {
  const r = await copy.query("select pg_replication_origin_advance('pg_' || oid, $2::pg_lsn) from pg_subscription where subname = $1", [name, lsn]);
  if (!r.rowCount) throw new Error(`the way back ${name} has no subscription in ${copy.database}`);
}

/** The prepared stream's name in `copy`, if any (a run killed after the commit finds it here). */
export async function preparedWayBack(copy: PgSide): Promise<string | undefined> {
  return withAdmin(copy.server, copy.database, async (c) => {
    const r = await c.query<{ subname: string }>(`select subname from pg_subscription where subname like 'tf\\_rev\\_%' and subdbid = (select oid from pg_database where datname = current_database()) order by oid desc limit 1`);
    return r.rows[0]?.subname;
  });
}

export async function startWayBack(copy: PgSide, name: string): Promise<void> {
  await withAdmin(copy.server, copy.database, (c) => c.query(`alter subscription ${ident(name)} enable`));
}

/** Subscription `name` of the database `c` is connected to: enabled, its apply worker's process
 * (none while the launcher starts or restarts it), and how often applying a change failed. */
export async function subscriptionHealth(c: Client, name: string): Promise<{ enabled: boolean; pid: number | null; errors: number } | undefined> {
  const r = await c.query<{ enabled: boolean; pid: number | null; errors: string }>(
    `select s.subenabled as enabled, (select pid from pg_stat_subscription w where w.subid = s.oid and w.relid is null limit 1) as pid,
            coalesce(st.apply_error_count, 0) as errors
     from pg_subscription s left join pg_stat_subscription_stats st on st.subid = s.oid where s.subname = $1`,
    [name],
  );
  const h = r.rows[0];
  return h && { enabled: h.enabled, pid: h.pid, errors: Number(h.errors) };
}

/**
 * Why stream `name` into `copy` cannot carry a move back now (nothing: it can): the subscription
 * gone or disabled, its worker not running, apply errors (a schema change the rows no longer
 * fit), the slot on the live server gone.
 */
export async function wayBackProblems(name: string, live: PgSide, copy: PgSide): Promise<string[]> {
  const sub = await withAdmin(copy.server, copy.database, (c) => subscriptionHealth(c, name));
  const where = `${copy.database} on ${copy.server.name}`;
  if (!sub) return [`${where} has no subscription ${name}`];
  const problems: string[] = [];
  if (!sub.enabled) problems.push(`its subscription ${name} is disabled`);
  else if (sub.pid === null) problems.push(`its subscription ${name} has no running worker`);
  if (Number(sub.errors) > 0) problems.push(`applying the changes of ${live.database} failed ${sub.errors} time(s) (a schema change on ${live.server.name}? the log of ${copy.server.name} says)`);
  const slot = await withAdmin(live.server, "postgres", async (c) => (await c.query("select 1 from pg_replication_slots where slot_name = $1", [name])).rowCount ?? 0);
  if (!slot) problems.push(`the slot ${name} is gone from ${live.server.name}`);
  return problems;
}

/**
 * Stop stream `name`: the subscription in `copy` dropped with its slot; then on the live side
 * whatever is left of it (the slot, when the copy's server could not drop it, the publication, the
 * login). Either side may be unreachable or gone: what could not be reached is reported.
 */
export async function stopWayBack(name: string, sides: { live?: PgSide; copy?: PgSide }): Promise<string[]> {
  const problems: string[] = [];
  const { live, copy } = sides;
  if (copy) {
    await withAdmin(copy.server, "postgres", async (c) => {
      const db = await c.query<{ datallowconn: boolean }>("select datallowconn from pg_database where datname = $1", [copy.database]);
      if (!db.rowCount) return;
      if (!db.rows[0]!.datallowconn) await c.query(`alter database ${ident(copy.database)} with allow_connections true`);
      await withAdmin(copy.server, copy.database, async (d) => {
        // Drops the slot on the live server too; if that cannot be reached, the slot goes below.
        if ((await d.query("select 1 from pg_subscription where subname = $1", [name])).rowCount) await dropSubscription(d, name);
      });
      if (!db.rows[0]!.datallowconn) await c.query(`alter database ${ident(copy.database)} with allow_connections false`);
    }).catch((e) => problems.push((e as Error).message));
  }
  if (live) {
    await withAdmin(live.server, "postgres", async (c) => {
      await dropSlot(c, name);
      const role = await c.query("select 1 from pg_roles where rolname = $1", [name]);
      const db = await c.query("select 1 from pg_database where datname = $1 and datallowconn", [live.database]);
      if (db.rowCount) await withAdmin(live.server, live.database, (d) => d.query(`drop publication if exists ${ident(name)}`));
      if (role.rowCount) {
        await c.query(`drop owned by ${ident(name)}`);
        await c.query(`drop role ${ident(name)}`);
      }
    }).catch((e) => problems.push((e as Error).message));
  }
  return problems;
}

/**
 * Leftovers of streams out of `live` that no kept copy uses: every `tf_rev_` publication and slot
 * of that database and their logins. For a database about to be dropped, or a copy whose
 * interrupted move back prepared a stream it never started.
 */
export async function dropWayBacksFrom(live: PgSide, except: string[] = []): Promise<string[]> {
  const removed: string[] = [];
  await withAdmin(live.server, "postgres", async (c) => {
    const slots = await c.query<{ slot_name: string }>("select slot_name from pg_replication_slots where database = $1 and slot_name like 'tf\\_rev\\_%'", [live.database]);
    for (const { slot_name } of slots.rows) {
      if (except.includes(slot_name)) continue;
      await dropSlot(c, slot_name);
      removed.push(`replication slot ${slot_name} on ${live.server.name}`);
    }
    const roles = await c.query<{ rolname: string }>(
      `select r.rolname from pg_roles r join pg_shdescription d on d.objoid = r.oid and d.classoid = 'pg_authid'::regclass where r.rolname like 'tf\\_rev\\_%' and d.description = $1`,
      [loginComment(live.database)],
    );
    for (const { rolname } of roles.rows) {
      if (except.includes(rolname)) continue;
      await c.query(`drop owned by ${ident(rolname)}`);
      await c.query(`drop role ${ident(rolname)}`);
      removed.push(`role ${rolname} on ${live.server.name}`);
    }
    const open = await c.query("select 1 from pg_database where datname = $1 and datallowconn", [live.database]);
    if (open.rowCount) {
      await withAdmin(live.server, live.database, async (d) => {
        for (const { pubname } of (await d.query<{ pubname: string }>("select pubname from pg_publication where pubname like 'tf\\_rev\\_%'")).rows) {
          if (except.includes(pubname)) continue;
          await d.query(`drop publication ${ident(pubname)}`);
          removed.push(`publication ${pubname} in ${live.database} on ${live.server.name}`);
        }
      });
    }
  });
  return removed;
}

/** Subscriptions of way-back streams in `copy` (a live database holds none but leftovers). */
export async function wayBacksInto(copy: PgSide): Promise<string[]> {
  return withAdmin(copy.server, "postgres", async (c) => {
    const r = await c.query<{ subname: string }>(
      "select s.subname from pg_subscription s join pg_database d on d.oid = s.subdbid where d.datname = $1 and s.subname like 'tf\\_rev\\_%'",
      [copy.database],
    );
    return r.rows.map((x) => x.subname);
  });
}
