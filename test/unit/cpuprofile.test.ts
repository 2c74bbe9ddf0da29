import { describe, expect, it } from "vitest";
import { summarizeCpuProfile, type CpuProfile } from "../../scripts/lib/cpuprofile";

const frame = (functionName: string, url = "", lineNumber = -1) => ({ functionName, url, lineNumber });

describe("summarizeCpuProfile", () => {
  it("ranks functions by self time as a share of the busy samples, leaving idle out", () => {
    const p: CpuProfile = {
      nodes: [
        { id: 1, callFrame: frame("(idle)") },
        { id: 2, callFrame: frame("writeBuffer") },
        { id: 3, callFrame: frame("scan", "file:///work/main/proxy/postgres/frame-reader.ts", 40) },
        { id: 4, callFrame: frame("", "file:///work/main/proxy/proxy.ts", 9) },
      ],
      samples: [1, 1, 1, 1, 1, 1, 2, 2, 2, 3, 4, 2],
    };
    const s = summarizeCpuProfile(p);
    expect(s.samples).toBe(12);
    expect(s.busyPct).toBe(50);
    expect(s.top).toEqual([
      { fn: "writeBuffer", pctOfBusy: 66.7 },
      { fn: "scan postgres/frame-reader.ts:41", pctOfBusy: 16.7 },
      { fn: "(anonymous) proxy/proxy.ts:10", pctOfBusy: 16.7 },
    ]);
  });

  it("keeps only the top N, and copes with an idle-only profile", () => {
    const p: CpuProfile = { nodes: [{ id: 1, callFrame: frame("(idle)") }, { id: 2, callFrame: frame("a") }, { id: 3, callFrame: frame("b") }], samples: [1, 2, 3, 3] };
    expect(summarizeCpuProfile(p, 1).top).toEqual([{ fn: "b", pctOfBusy: 66.7 }]);
    expect(summarizeCpuProfile({ nodes: [{ id: 1, callFrame: frame("(idle)") }], samples: [1, 1] })).toEqual({ samples: 2, busyPct: 0, top: [] });
  });
});
