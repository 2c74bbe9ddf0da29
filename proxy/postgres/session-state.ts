/**
 * A parked session's state, read from its current server and rebuilt on the next one.
 *
 * Read from the server itself (pg_settings, pg_prepared_statements, pg_listening_channels) rather
 * than by parsing the client's SQL: `SET` inside functions, `PREPARE` in a multi-statement query
 * and `LISTEN` in a DO block are all seen. Protocol-level statements are re-prepared from the
 * exact Parse message the client sent (parameter type OIDs included).
 *
 * State that cannot move: temporary tables, held advisory locks and WITH HOLD cursors. A session
 * holding any keeps running during a drain (like an open transaction) until it lets go.
 */
import type { Backend } from "./backend";
import * as w from "./writer";

export interface SessionSnapshot {
  temporaryTables: number;
  advisoryLocks: number;
  holdableCursors: number;
  /** name → value (current_setting form, with units) of settings changed in the session. */
  settings: [string, string][];
  listen: string[];
  /** SQL-level PREPAREs: their full PREPARE text. */
  sqlPrepared: [string, string][];
  /** Names of protocol-level prepared statements the server really holds. */
  protocolPrepared: string[];
}

const SNAPSHOT_SQL = `select
  (select count(*) from pg_class where relnamespace = pg_my_temp_schema())::int,
  (select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid() and granted)::int,
  (select count(*) from pg_cursors where is_holdable)::int,
  coalesce((select json_agg(json_build_array(name, current_setting(name))) from pg_settings where source = 'session'), '[]'),
  coalesce((select json_agg(c) from pg_listening_channels() c), '[]'),
  coalesce((select json_agg(json_build_array(name, statement)) from pg_prepared_statements where from_sql), '[]'),
  coalesce((select json_agg(name) from pg_prepared_statements where not from_sql), '[]')`;

export async function snapshotSession(b: Backend): Promise<SessionSnapshot> {
  const r = await b.query(SNAPSHOT_SQL);
  if (r.error) throw new Error(`session state query failed: ${r.error.M}`);
  const row = r.rows[0]!;
  return {
    temporaryTables: Number(row[0]),
    advisoryLocks: Number(row[1]),
    holdableCursors: Number(row[2]),
    settings: JSON.parse(row[3]!),
    listen: JSON.parse(row[4]!),
    sqlPrepared: JSON.parse(row[5]!),
    protocolPrepared: JSON.parse(row[6]!),
  };
}

/** A string literal that is safe whatever standard_conforming_strings says: dollar quoting. */
export function literal(s: string): string {
  let tag = "tf";
  while (s.includes(`$${tag}$`)) tag += "x";
  return `$${tag}$${s}$${tag}$`;
}

export const ident = (s: string) => `"${s.replace(/"/g, '""')}"`;

/**
 * Rebuild the session on `b`. Without a snapshot (the old server was unreachable) only what the
 * proxy tracked itself moves: startup parameters (sent at connect) and protocol statements.
 */
export async function restoreSession(
  b: Backend,
  snap: SessionSnapshot | undefined,
  parses: Map<string, Buffer>,
  unnamedParse: Buffer | undefined,
): Promise<{ failures: string[] }> {
  const failures: string[] = [];
  const statements: string[] = [];
  for (const [name, value] of snap?.settings ?? []) statements.push(`select set_config(${literal(name)}, ${literal(value)}, false)`);
  for (const [, text] of snap?.sqlPrepared ?? []) statements.push(text);
  for (const ch of snap?.listen ?? []) statements.push(`listen ${ident(ch)}`);
  // One round trip: each statement its own Query, each Parse followed by its own Sync, so a
  // step that fails (a table gone, say) fails alone.
  const messages: Buffer[] = statements.map((sql) => w.query(sql));
  const names = snap ? snap.protocolPrepared : [...parses.keys()];
  for (const name of names) {
    const p = parses.get(name);
    if (p) messages.push(p, w.sync());
    else failures.push(`protocol statement ${name}: its Parse message was not seen by this proxy`);
  }
  if (unnamedParse) messages.push(unnamedParse, w.sync());
  for (const e of await b.pipeline(messages)) failures.push(`${e.M}`);
  return { failures };
}
