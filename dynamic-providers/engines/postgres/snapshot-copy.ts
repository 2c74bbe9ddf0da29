/**
 * The initial copy of a PostgreSQL move: every user table's rows as of one snapshot, the snapshot
 * a replication slot exported when it was made, so the subscription that later streams from that
 * slot starts exactly where the copy ends (no row applied twice, none missed).
 *
 * Why not the subscription's own table copy: it writes into tables whose indexes already exist
 * (every row updates every index) and copies one table per sync worker. Here the target holds the
 * tables only (pre-data); the rows go in with COPY, in parallel across tables and across page
 * ranges of a big table (TID range scans), and the indexes and constraints are built once after
 * the data (post-data), as pg_restore does. Nothing is written to disk between the servers: each
 * range is `COPY … TO STDOUT` on the source piped into `COPY … FROM STDIN` on the target.
 */
import { pipeline } from "node:stream/promises";
import { escapeLiteral as literal, type Client } from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { connectAdmin, type PgServerAccess } from "./tenant-db";

/** A table larger than this is copied as several page ranges, so one big table uses every worker. */
const RANGE_PAGES = 16_384; // 128 MB of 8 kB pages

export interface CopyProgress {
  bytesTotal: number;
  bytesDone: number;
  tables: number;
  tablesDone: number;
}

interface Range {
  table: string;
  /** Column list without generated columns (the target computes those). */
  columns: string;
  /** `where` on ctid, or none for a table copied whole. */
  where: string;
  bytes: number;
}

export interface SnapshotCopyArgs {
  source: PgServerAccess;
  sourceDatabase: string;
  target: PgServerAccess;
  targetDatabase: string;
  /** The snapshot the slot exported (`CREATE_REPLICATION_SLOT … EXPORT_SNAPSHOT`). */
  snapshot: string;
  /** Parallel COPY streams. */
  workers: number;
  /** Binary COPY (same major version on both sides), else text. */
  binary: boolean;
  /** Called once every worker has imported the snapshot: the exporting connection may close. */
  onSnapshotImported?: () => void;
}

/** The user tables of the snapshot and their ranges, biggest first (they finish last otherwise). */
async function planRanges(c: Client): Promise<{ ranges: Range[]; tables: string[] }> {
  const r = await c.query<{ qname: string; pages: number; bytes: string; columns: string }>(
    `select format('%I.%I', n.nspname, c.relname) as qname, pg_relation_size(c.oid) / current_setting('block_size')::int as pages,
            pg_relation_size(c.oid) as bytes,
            (select string_agg(quote_ident(a.attname), ', ' order by a.attnum) from pg_attribute a
              where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attgenerated = '') as columns
     from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where c.relkind = 'r' and c.relpersistence = 'p' and n.nspname not in ('pg_catalog', 'information_schema')
       and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%'
     order by pg_relation_size(c.oid) desc`,
  );
  const ranges: Range[] = [];
  for (const t of r.rows) {
    if (!t.columns) continue; // a table without columns has no rows to carry
    const bytes = Number(t.bytes);
    const pages = Number(t.pages);
    if (pages <= RANGE_PAGES) {
      ranges.push({ table: t.qname, columns: t.columns, where: "", bytes });
      continue;
    }
    for (let lo = 0; lo < pages; lo += RANGE_PAGES) {
      const hi = lo + RANGE_PAGES;
      // The last range is open-ended: pages the table grew by after the size was read are in it.
      const where = hi >= pages ? `where ctid >= '(${lo},0)'::tid` : `where ctid >= '(${lo},0)'::tid and ctid < '(${hi},0)'::tid`;
      ranges.push({ table: t.qname, columns: t.columns, where, bytes: Math.min(RANGE_PAGES, pages - lo) * (bytes / pages) });
    }
  }
  return { ranges, tables: [...new Set(ranges.map((x) => x.table))] };
}

export class SnapshotCopy {
  private totals = { bytesTotal: 0, bytesCopied: 0, tables: 0, tablesDone: 0 };
  /** Ranges being copied: bytes read of each so far (capped at its estimate). */
  private readonly inFlight = new Map<Range, number>();

  constructor(private readonly a: SnapshotCopyArgs) {}

  progress(): CopyProgress {
    let flying = 0;
    for (const [r, n] of this.inFlight) flying += Math.min(r.bytes, n);
    const { bytesTotal, bytesCopied, tables, tablesDone } = this.totals;
    return { bytesTotal, bytesDone: bytesCopied + flying, tables, tablesDone };
  }

  /** Copy every table's rows; rejects with the first range that failed (the others are stopped). */
  async run(): Promise<void> {
    const { a } = this;
    const opened: Client[] = [];
    const open = async (s: PgServerAccess, db: string) => {
      const c = await connectAdmin(s, db);
      opened.push(c);
      return c;
    };
    try {
      const first = await open(a.source, a.sourceDatabase);
      await importSnapshot(first, a.snapshot);
      const { ranges, tables } = await planRanges(first);
      const left = new Map<string, number>();
      for (const r of ranges) left.set(r.table, (left.get(r.table) ?? 0) + 1);
      this.totals = { bytesTotal: ranges.reduce((n, r) => n + r.bytes, 0), bytesCopied: 0, tables: tables.length, tablesDone: 0 };
      const workers = Math.max(1, Math.min(a.workers, ranges.length));
      const pairs: { src: Client; dst: Client }[] = [];
      for (let i = 0; i < workers; i++) {
        const src = i === 0 ? first : await open(a.source, a.sourceDatabase);
        if (i > 0) await importSnapshot(src, a.snapshot);
        const dst = await open(a.target, a.targetDatabase);
        // The move fails as a whole if the target stops: its commits need not wait for a flush.
        await dst.query("set synchronous_commit = off");
        pairs.push({ src, dst });
      }
      a.onSnapshotImported?.();
      let next = 0;
      let failed: Error | undefined;
      const format = a.binary ? "(format binary)" : "";
      await Promise.all(
        pairs.map(async ({ src, dst }) => {
          while (!failed && next < ranges.length) {
            const r = ranges[next++]!;
            this.inFlight.set(r, 0);
            try {
              // A whole table is read by COPY itself (no executor per row); a range needs its query.
              const what = r.where ? `(select ${r.columns} from ${r.table} ${r.where})` : `${r.table} (${r.columns})`;
              const out = src.query(copyTo(`copy ${what} to stdout ${format}`));
              const into = dst.query(copyFrom(`copy ${r.table} (${r.columns}) from stdin ${format}`));
              // Wire bytes against the range's share of the table's size: progress, not accounting.
              out.on("data", (b: Buffer) => this.inFlight.set(r, this.inFlight.get(r)! + b.length));
              await pipeline(out, into);
            } catch (e) {
              failed ??= new Error(`copying ${r.table}${r.where ? ` (${r.where})` : ""}: ${(e as Error).message}`);
              return;
            } finally {
              this.inFlight.delete(r);
            }
            this.totals.bytesCopied += r.bytes;
            const n = left.get(r.table)! - 1;
            left.set(r.table, n);
            if (n === 0) this.totals.tablesDone++;
          }
        }),
      );
      if (failed) throw failed;
      for (const { src } of pairs) await src.query("commit");
    } finally {
      await Promise.all(opened.map((c) => c.end().catch(() => undefined)));
    }
  }
}

async function importSnapshot(c: Client, snapshot: string): Promise<void> {
  await c.query("begin transaction isolation level repeatable read read only");
  await c.query(`set transaction snapshot ${literal(snapshot)}`);
}
