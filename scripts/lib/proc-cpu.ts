/** CPU time of processes from /proc (Linux), for the benchmarks' CPU accounting. */
import { readFileSync } from "node:fs";

export const CLK_TCK = 100; // USER_HZ: 100 on every Linux architecture Node runs on

/**
 * CPU ticks of a process from /proc/<pid>/stat: user+system ("all"), system only, or its reaped
 * children's (cutime+cstime).
 */
export function procTicks(pid: number | "self", which: "all" | "system" | "children" = "all"): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // fields from #3 (state) on
    const [utime, stime, cutime, cstime] = [f[11], f[12], f[13], f[14]].map(Number) as [number, number, number, number];
    return which === "children" ? cutime + cstime : which === "system" ? stime : utime + stime;
  } catch {
    return NaN;
  }
}
