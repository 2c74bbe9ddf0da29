/**
 * Summarise a V8 CPU profile (`node --cpu-prof`, a .cpuprofile file): the share of samples per
 * function (self time), so a benchmark can say where the proxy's busy time goes.
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

export interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame }[];
  samples: number[];
}

export interface CpuProfileSummary {
  samples: number;
  /** Percent of samples not idle (the main thread was doing something). */
  busyPct: number;
  /** Functions by self time, as a percent of busy samples. */
  top: { fn: string; pctOfBusy: number }[];
}

const IDLE = "(idle)";

function label(cf: CallFrame): string {
  const name = cf.functionName || "(anonymous)";
  if (!cf.url) return name; // native or V8-internal: writeBuffer, (garbage collector), (program)
  const file = cf.url.replace(/^file:\/\//, "").split("/").slice(-2).join("/");
  return `${name} ${file}:${cf.lineNumber + 1}`;
}

export function summarizeCpuProfile(p: CpuProfile, top = 15): CpuProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, label(n.callFrame)]));
  const counts = new Map<string, number>();
  let idle = 0;
  for (const id of p.samples) {
    const l = byId.get(id) ?? "(unknown)";
    if (l === IDLE) idle++;
    else counts.set(l, (counts.get(l) ?? 0) + 1);
  }
  const busy = p.samples.length - idle;
  const pct = (n: number, of: number) => (of ? Math.round((1000 * n) / of) / 10 : 0);
  return {
    samples: p.samples.length,
    busyPct: pct(busy, p.samples.length),
    top: [...counts.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([fn, n]) => ({ fn, pctOfBusy: pct(n, busy) })),
  };
}
