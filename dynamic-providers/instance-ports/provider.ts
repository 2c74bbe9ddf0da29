/**
 * InstancePorts: a port for each instance on a host, kept for the instance's life. The port is in
 * the instance's config on the host, the catalog's route and every proxy's connections, so a list
 * that changes (an instance added, another removed) never renumbers the others: a new instance
 * takes the lowest free port, a removed one frees its port. Pure bookkeeping, no side effect: the
 * state is the record.
 */
import type * as pulumi from "@pulumi/pulumi";
import type { InstancePortsInputs, InstancePortsOutputs } from "./types";

/** `previous` kept for the names still present; each new name (in sorted order) the lowest free port. */
export function assignPorts(previous: Record<string, number>, names: string[], firstPort: number, lastPort: number): Record<string, number> {
  const ports: Record<string, number> = {};
  const used = new Set<number>();
  const wanted = [...new Set(names)].sort();
  for (const n of wanted) {
    const p = previous[n];
    if (p !== undefined && p >= firstPort && p <= lastPort && !used.has(p)) {
      ports[n] = p;
      used.add(p);
    }
  }
  let next = firstPort;
  for (const n of wanted) {
    if (ports[n] !== undefined) continue;
    while (used.has(next)) next++;
    if (next > lastPort) throw new Error(`no free port left in ${firstPort}-${lastPort} for ${n}: ${wanted.length} instances on one host`);
    ports[n] = next;
    used.add(next);
  }
  return ports;
}

const outputs = (inputs: InstancePortsInputs, previous: Record<string, number>): InstancePortsOutputs => ({
  ...inputs,
  ports: assignPorts(previous, inputs.names, inputs.firstPort, inputs.lastPort),
});

export const provider: pulumi.dynamic.ResourceProvider = {
  async check(_olds, news: Record<string, unknown>) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    if (typeof news.host !== "string" || !news.host) failures.push({ property: "host", reason: "host must name the server the instances run on" });
    if (!Array.isArray(news.names) || news.names.some((n) => typeof n !== "string")) failures.push({ property: "names", reason: "names must be a list of instance names" });
    const [first, last] = [news.firstPort, news.lastPort];
    if (!Number.isInteger(first) || !Number.isInteger(last) || (first as number) < 1024 || (last as number) > 65535 || (first as number) > (last as number)) {
      failures.push({ property: "firstPort", reason: `the port range ${String(first)}-${String(last)} must lie in 1024-65535` });
    }
    return failures.length ? { failures } : { inputs: news };
  },

  async diff(_id, olds: InstancePortsOutputs, news: InstancePortsInputs) {
    const replaces = olds.host !== news.host ? ["host"] : [];
    const same = (a: string[], b: string[]) => a.length === b.length && [...a].sort().every((x, i) => x === [...b].sort()[i]);
    const changes = replaces.length > 0 || !same(olds.names, news.names) || olds.firstPort !== news.firstPort || olds.lastPort !== news.lastPort;
    return { changes, replaces };
  },

  async create(inputs: InstancePortsInputs) {
    return { id: inputs.host, outs: outputs(inputs, {}) };
  },

  async update(_id, olds: InstancePortsOutputs, news: InstancePortsInputs) {
    return { outs: outputs(news, olds.ports ?? {}) };
  },
};
