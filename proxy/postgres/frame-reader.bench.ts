/**
 * Micro-benchmark of FrameScanner, the proxy's hot path (CONVENTIONS: keep a micro-benchmark next
 * to the parser). `npm run bench:framing` prints one JSON object: MB/s and messages/s, the median
 * of several runs, for
 *   - a result set of small DataRow messages (100 bytes each) in 64 KB socket chunks, with DataRow
 *     skipped (what a forwarding session does) and wanted (the proxy's own queries);
 *   - big CopyData messages (1 MB each) in 64 KB chunks, skipped and wanted (wanted = a copy each).
 * Every run checks what the scanner reported, so a broken scanner cannot look fast.
 *
 * Options (env): BENCH_MB (stream size per case, default 64), BENCH_RUNS (default 7).
 */
import { BE, FE } from "./codes";
import { FrameScanner, typeSet } from "./frame-reader";
import * as w from "./writer";

const STREAM_BYTES = Number(process.env.BENCH_MB ?? 64) * 1024 * 1024;
const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const CHUNK = 64 * 1024;

/** A DataRow of exactly `total` bytes on the wire: one text column filling the body. */
function dataRow(total: number): Buffer {
  const value = Buffer.alloc(total - 5 - 2 - 4, "x");
  const body = Buffer.alloc(2 + 4 + value.length);
  body.writeInt16BE(1, 0);
  body.writeInt32BE(value.length, 2);
  value.copy(body, 6);
  return w.message(BE.DataRow, body);
}

/** `message` repeated to about STREAM_BYTES, then a ReadyForQuery; cut into CHUNK-byte chunks. */
function stream(message: Buffer): { chunks: Buffer[]; bytes: number; messages: number } {
  const count = Math.max(1, Math.floor(STREAM_BYTES / message.length));
  const rfq = w.readyForQuery(0x49);
  const all = Buffer.alloc(count * message.length + rfq.length);
  for (let i = 0; i < count; i++) message.copy(all, i * message.length);
  rfq.copy(all, count * message.length);
  const chunks: Buffer[] = [];
  for (let at = 0; at < all.length; at += CHUNK) chunks.push(all.subarray(at, at + CHUNK));
  return { chunks, bytes: all.length, messages: count + 1 };
}

interface Case {
  name: string;
  messageBytes: number;
  wants: Uint8Array;
  type: number;
}

function run(c: Case, s: ReturnType<typeof stream>): number {
  const scanner = new FrameScanner(c.wants);
  let reported = 0;
  let bodyBytes = 0;
  const onFrame = (_type: number, body: Buffer) => {
    reported++;
    bodyBytes += body.length;
  };
  const t0 = process.hrtime.bigint();
  for (const chunk of s.chunks) scanner.scan(chunk, onFrame);
  const ns = Number(process.hrtime.bigint() - t0);
  const wanted = c.wants[c.type] === 1;
  const expected = wanted ? s.messages : 1; // the trailing ReadyForQuery is always wanted
  if (!scanner.atBoundary || reported !== expected || bodyBytes < (wanted ? (s.messages - 1) * (c.messageBytes - 5) : 1)) {
    throw new Error(`${c.name}: scanner reported ${reported} frames (${bodyBytes} body bytes), expected ${expected}`);
  }
  return ns;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
};

const FORWARDING = typeSet([BE.ReadyForQuery, BE.ParameterStatus]);
const cases: Case[] = [
  { name: "datarow_100B_skipped", messageBytes: 100, type: BE.DataRow, wants: FORWARDING },
  { name: "datarow_100B_wanted", messageBytes: 100, type: BE.DataRow, wants: typeSet([BE.ReadyForQuery, BE.DataRow]) },
  { name: "copydata_1MB_skipped", messageBytes: 1024 * 1024, type: FE.CopyData, wants: FORWARDING },
  { name: "copydata_1MB_wanted", messageBytes: 1024 * 1024, type: FE.CopyData, wants: typeSet([BE.ReadyForQuery, FE.CopyData]) },
];

const results = cases.map((c) => {
  const message = c.type === BE.DataRow ? dataRow(c.messageBytes) : w.message(FE.CopyData, Buffer.alloc(c.messageBytes - 5, 7));
  const s = stream(message);
  run(c, s); // warm-up: JIT and caches
  run(c, s);
  const times = Array.from({ length: RUNS }, () => run(c, s));
  const ns = median(times);
  const seconds = ns / 1e9;
  return {
    case: c.name,
    messageBytes: c.messageBytes,
    streamMB: +(s.bytes / 1048576).toFixed(1),
    messages: s.messages,
    medianMs: +(ns / 1e6).toFixed(2),
    MBps: Math.round(s.bytes / 1048576 / seconds),
    messagesPerSec: Math.round(s.messages / seconds),
    /** A skipped 1 MB CopyData costs a subtraction per chunk: MB/s is meaningless there, this is not. */
    nsPerChunk: Math.round(ns / s.chunks.length),
    spreadPct: +((100 * (Math.max(...times) - Math.min(...times))) / ns).toFixed(1),
  };
});

console.log(JSON.stringify({ node: process.version, arch: process.arch, chunkBytes: CHUNK, runs: RUNS, results }, null, 2));
