/** InstancePorts: the port of an instance on a shared host is kept for its life (provider.ts). */
import { describe, expect, it } from "vitest";
import { assignPorts, provider } from "../../dynamic-providers/instance-ports/provider";
import type { InstancePortsOutputs } from "../../dynamic-providers/instance-ports/types";
import { renderRedisManifest } from "../../components/platforms/vm/redis-instances";

const inputs = (names: string[]) => ({ host: "shared-redis-eu-west", names, firstPort: 6380, lastPort: 6389 });

describe("InstancePorts", () => {
  it("gives new instances the lowest free ports, in name order", async () => {
    const { outs } = await provider.create!(inputs(["b", "a", "c"]));
    expect(outs.ports).toEqual({ a: 6380, b: 6381, c: 6382 });
  });

  it("keeps every remaining instance's port when others come and go; a freed port is reused", async () => {
    const first = (await provider.create!(inputs(["a", "b", "c"]))).outs as InstancePortsOutputs;
    // `a` goes, `0-new` (sorts first) comes: it takes a's freed port, b and c keep theirs.
    const diff = await provider.diff!("shared-redis-eu-west", first, inputs(["0-new", "b", "c"]));
    expect(diff).toEqual({ changes: true, replaces: [] });
    const second = (await provider.update!("shared-redis-eu-west", first, inputs(["0-new", "b", "c"]))).outs as InstancePortsOutputs;
    expect(second.ports).toEqual({ "0-new": 6380, b: 6381, c: 6382 });
    const third = (await provider.update!("shared-redis-eu-west", second, inputs(["b", "c", "d", "e"]))).outs as InstancePortsOutputs;
    expect(third.ports).toEqual({ b: 6381, c: 6382, d: 6380, e: 6383 });
  });

  it("no change for the same names in another order; another host is a replacement", async () => {
    const o = (await provider.create!(inputs(["a", "b"]))).outs as InstancePortsOutputs;
    expect(await provider.diff!("x", o, inputs(["b", "a"]))).toEqual({ changes: false, replaces: [] });
    expect(await provider.diff!("x", o, { ...inputs(["a", "b"]), host: "shared-redis-us-east" })).toEqual({ changes: true, replaces: ["host"] });
  });

  it("a full range is an error that names the instance, not a port given twice", () => {
    const names = Array.from({ length: 11 }, (_, i) => `i${String(i).padStart(2, "0")}`);
    expect(() => assignPorts({}, names, 6380, 6389)).toThrow(/no free port left in 6380-6389 for i10: 11 instances on one host/);
  });

  it("check refuses a bad range and a missing host", async () => {
    const r = await provider.check!({}, { host: "", names: ["a"], firstPort: 80, lastPort: 6389 });
    expect(r.failures?.map((f) => f.property).sort()).toEqual(["firstPort", "host"]);
  });
});

describe("the Redis instance manifest a host pulls", () => {
  it("one line per instance, sorted; a port twice, a port out of range or a bad name is refused", () => {
    expect(renderRedisManifest("h", [{ name: "h--b-cache", port: 6381, maxmemoryMb: 512 }, { name: "h--a-cache", port: 6380, maxmemoryMb: 256 }]).split("\n").slice(1)).toEqual(["h--a-cache 6380 256", "h--b-cache 6381 512", ""]);
    expect(() => renderRedisManifest("h", [{ name: "a", port: 6380, maxmemoryMb: 1 }, { name: "b", port: 6380, maxmemoryMb: 1 }])).toThrow(/port 6380 is given twice/);
    expect(() => renderRedisManifest("h", [{ name: "a", port: 6379, maxmemoryMb: 1 }])).toThrow(/outside 6380-7379/);
    expect(() => renderRedisManifest("h", [{ name: "A b", port: 6380, maxmemoryMb: 1 }])).toThrow(/lowercase letters, digits and hyphens/);
  });
});
