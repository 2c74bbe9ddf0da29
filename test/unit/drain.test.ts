/**
 * TenantDrain's bookkeeping on its own: when it reports drained and switched, the lease, and the
 * connections waiting for it to open. (The same behaviour end to end, with real sessions, is in
 * test/integration/proxy-switch.test.ts.)
 */
import { describe, expect, it } from "vitest";
import { TenantDrain, type DrainMember } from "../../proxy/drain";

class Member implements DrainMember {
  parked = false;
  epoch = 1;
  holdup: DrainMember["holdup"] = "in_flight";
  calls: string[] = [];
  pause() {
    this.calls.push("pause");
  }
  resume() {
    this.calls.push("resume");
  }
  routeChanged() {
    this.calls.push("routeChanged");
  }
}

function drain() {
  const events: string[] = [];
  const progress: string[] = [];
  const d = new TenantDrain("app__acme", {
    drained: () => events.push("drained"),
    progress: (dr) => {
      const r = dr.report();
      progress.push(`parked ${r.parked}/${r.sessions}, unmovable ${r.unmovableState}`);
    },
    switched: (_d, epoch) => events.push(`switched:${epoch}`),
    leaseExpired: () => events.push("leaseExpired"),
  });
  return { d, events, progress };
}

describe("TenantDrain", () => {
  it("reports no progress while its members move to a committed route: the coordinator waits for switched only", () => {
    const { d, events, progress } = drain();
    const a = new Member();
    const b = new Member();
    d.join(a);
    d.join(b);
    d.pause(3, 10_000);
    a.parked = b.parked = true;
    d.check();
    const before = progress.length;
    d.routeChanged(2);
    // Each member unparks while it swaps its connection, then parks on the new epoch.
    a.parked = false;
    d.check();
    a.parked = true;
    a.epoch = 2;
    d.check();
    b.parked = false;
    d.check();
    b.parked = true;
    b.epoch = 2;
    d.check();
    expect(progress.length).toBe(before);
    expect(events).toEqual(["drained", "switched:2"]);
    d.close();
  });

  it("passes an announced target to every member", () => {
    const { d } = drain();
    const seen: string[] = [];
    const a = Object.assign(new Member(), { announced: (t: { host: string; port: number }) => seen.push(`${t.host}:${t.port}`) });
    d.join(a);
    d.join(new Member()); // a member without the hook (another engine's session) is skipped
    d.announce({ host: "10.0.0.2", port: 5432, backendDatabase: "app__acme" }, 1000);
    expect(seen).toEqual(["10.0.0.2:5432"]);
    d.close();
  });

  it("reports drained once, when the last member parks", () => {
    const { d, events } = drain();
    const a = new Member();
    const b = new Member();
    d.join(a);
    d.join(b);
    d.pause(7, 10_000);
    expect(a.calls).toEqual(["pause"]);
    expect(events).toEqual([]);
    a.parked = true;
    d.check();
    expect(events).toEqual([]);
    expect(d.report()).toMatchObject({ sessions: 2, parked: 1, inFlight: 1 });
    b.parked = true;
    d.check();
    d.check();
    expect(events).toEqual(["drained"]);
    d.close();
  });

  it("reports progress at the pause and whenever what holds the drain up changes, not on every check", () => {
    const { d, events, progress } = drain();
    const a = new Member();
    const b = new Member();
    d.join(a);
    d.join(b);
    d.pause(3, 10_000);
    expect(progress).toEqual(["parked 0/2, unmovable 0"]);
    d.check();
    expect(progress).toHaveLength(1);
    a.holdup = "unmovable_state";
    d.check();
    b.parked = true;
    d.check();
    expect(progress).toEqual(["parked 0/2, unmovable 0", "parked 0/2, unmovable 1", "parked 1/2, unmovable 1"]);
    a.parked = true;
    d.check();
    expect(events).toEqual(["drained"]);
    expect(progress).toHaveLength(3);
    d.close();
  });

  it("with no sessions, a pause is drained at once", () => {
    const { d, events } = drain();
    d.pause(1, 10_000);
    expect(events).toEqual(["drained"]);
    d.close();
  });

  it("a member leaving (its client hung up) can complete the drain", () => {
    const { d, events } = drain();
    const a = new Member();
    d.join(a);
    d.pause(1, 10_000);
    d.leave(a);
    expect(events).toEqual(["drained"]);
    d.close();
  });

  it("reports switched only when every parked member is on the new epoch", () => {
    const { d, events } = drain();
    const a = new Member();
    const b = new Member();
    for (const m of [a, b]) {
      m.parked = true;
      d.join(m);
    }
    d.pause(3, 10_000);
    d.routeChanged(2);
    expect(a.calls).toContain("routeChanged");
    expect(events).toEqual(["drained"]);
    a.epoch = 2;
    d.check();
    expect(events).toEqual(["drained"]);
    b.epoch = 2;
    d.check();
    expect(events).toEqual(["drained", "switched:2"]);
    d.close();
  });

  it("a member joining a paused drain is told to pause", () => {
    const { d } = drain();
    d.pause(1, 10_000);
    const a = new Member();
    d.join(a);
    expect(a.calls).toEqual(["pause"]);
    d.close();
  });

  it("new connections wait until the drain opens; resume releases members", async () => {
    const { d } = drain();
    const a = new Member();
    d.join(a);
    d.pause(1, 10_000);
    let opened = false;
    const waiting = d.waitOpen().then(() => (opened = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(opened).toBe(false);
    d.resume();
    await waiting;
    expect(opened).toBe(true);
    expect(a.calls).toEqual(["pause", "resume"]);
    expect(d.paused).toBe(false);
  });

  it("fires leaseExpired when the lease runs out, and a renewal pushes it back", async () => {
    const { d, events } = drain();
    d.pause(1, 60);
    await new Promise((r) => setTimeout(r, 30));
    d.pause(1, 80); // renewed: same pause id, new lease
    await new Promise((r) => setTimeout(r, 50));
    expect(events).not.toContain("leaseExpired");
    await new Promise((r) => setTimeout(r, 60));
    expect(events).toContain("leaseExpired");
    d.close();
  });

  it("resume cancels the lease", async () => {
    const { d, events } = drain();
    d.pause(1, 30);
    d.resume();
    await new Promise((r) => setTimeout(r, 60));
    expect(events).not.toContain("leaseExpired");
  });
});
