/**
 * The Redis listener of real proxy processes in front of real Redis instances (as LocalServer
 * creates them), through real clients: ioredis (RESP2 and RESP3) and `redis-cli`. Logins are
 * checked against the catalog's verifier and the proxy logs in as the tenant's ACL user; one
 * tenant's login never reaches another's instance; refusals are RESP errors. Then drain and
 * switch: acme's cache is moved back and forth between two instances (the keys written on the
 * old one copied during each pause, as a migration's final catch-up would) under pipelined
 * writes, transactions, subscribers, blocked consumers, scripts and a stream consumer group
 * through both proxies.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import IORedis, { type RedisOptions } from "ioredis";
import { Client } from "pg";
import type { ProxyProcess } from "../../scripts/lib/local-pg-fleet";
import type { LocalServerOutputs } from "../../dynamic-providers/local-server/types";
import { commitRoute } from "../../proxy/catalog/routes";
import { Coordinator } from "../../proxy/catalog/coordinator";
import { redisFleet, type RedisFleet, type RedisTenant } from "../../scripts/lib/local-redis-servers";

const execFileP = promisify(execFile);
let f: RedisFleet;
let coord: Coordinator;
const open = new Set<IORedis>();

function connect(p: ProxyProcess, t: RedisTenant, extra: RedisOptions = {}): IORedis {
  const c = new IORedis({ host: "127.0.0.1", port: p.redisPort, username: t.user, password: t.password, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, ...extra });
  c.on("error", () => undefined);
  open.add(c);
  return c;
}

/** The error a login gets (ioredis reports it as an "error" event, then the connection closes, as with Redis itself). */
async function loginError(p: ProxyProcess, t: RedisTenant): Promise<string> {
  const c = new IORedis({ host: "127.0.0.1", port: p.redisPort, username: t.user, password: t.password, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  let first = "";
  c.on("error", (e: Error) => (first ||= e.message));
  await c.connect().catch(() => undefined);
  c.disconnect();
  return first;
}

async function ready(p: ProxyProcess, t: RedisTenant, extra: RedisOptions = {}): Promise<IORedis> {
  const c = connect(p, t, extra);
  await c.connect();
  return c;
}

/** Until every proxy has loaded the route of `t`. */
async function served(t: RedisTenant): Promise<void> {
  for (const p of [f.p1, f.p2]) {
    for (const end = Date.now() + 30_000; ; ) {
      const c = connect(p, t);
      const ok = await c.connect().then(
        () => true,
        () => false,
      );
      c.disconnect();
      open.delete(c);
      if (ok) break;
      if (Date.now() > end) throw new Error(`${p.id} does not serve ${t.user}; proxy log: ${JSON.stringify(p.logs.slice(-5))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

beforeAll(async () => {
  f = await redisFleet("redis-proxy");
  await served(f.acme);
  await served(f.globex);
  coord = await Coordinator.connect(f.fleet.catalogConfig);
}, 240_000);

afterAll(async () => {
  for (const c of open) c.disconnect();
  await coord?.close();
  await f?.rs.close();
  await f?.fleet.close();
}, 120_000);

const cli = (p: ProxyProcess, t: RedisTenant, args: string[], input?: string) =>
  new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
    const child = execFile("redis-cli", ["-p", String(p.redisPort), "--user", t.user, "--no-auth-warning", ...args], { env: { ...process.env, REDISCLI_AUTH: t.password } }, (e, stdout, stderr) =>
      e ? reject(Object.assign(e, { stdout, stderr })) : resolve({ stdout, stderr }),
    );
    if (input !== undefined) child.stdin!.end(input);
  });

describe("Redis listener", () => {
  it("serves the tenant's own instance with ioredis, RESP2 and RESP3, pipelined", async () => {
    const c = await ready(f.p1, f.acme);
    expect(await c.set("k", "v")).toBe("OK");
    expect(await c.get("k")).toBe("v");
    const pipe = c.pipeline();
    for (let i = 0; i < 100; i++) pipe.incr("n");
    const res = await pipe.exec();
    expect(res!.map(([, v]) => v)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(await c.call("ACL", "WHOAMI")).toBe(f.acme.user);
    const r3 = await ready(f.p2, f.acme, { protocol: 3 } as RedisOptions); // ioredis 6 logs in with HELLO 3 AUTH by default; protocol 2 with AUTH
    expect(await r3.get("k")).toBe("v");
    const r2 = await ready(f.p2, f.acme, { protocol: 2 } as RedisOptions);
    expect(await r2.get("k")).toBe("v");
    expect(await r2.hgetall("nohash")).toEqual({});
    const hello = (await r3.call("HELLO", "3")) as unknown[];
    expect(hello).toContain("proto");
    // The instance really is acme's: the key is there, and not on globex's.
    expect(await f.rs.admin(f.a1, (a) => a.get("k"))).toBe("v");
    expect(await f.rs.admin(f.g1, (a) => a.exists("k"))).toBe(0);
  });

  it("refuses wrong credentials with WRONGPASS, commands before AUTH with NOAUTH, never reaching another tenant's instance", async () => {
    expect(await loginError(f.p1, { ...f.acme, password: "wrong" })).toMatch(/^WRONGPASS/);
    expect(await loginError(f.p1, { ...f.acme, user: "nobody" })).toMatch(/^WRONGPASS/);
    const anon = connect(f.p1, f.acme, { username: undefined, password: undefined, enableReadyCheck: false, protocol: 2 } as RedisOptions);
    await anon.connect();
    await expect(anon.get("k")).rejects.toThrow(/NOAUTH/);
    // acme's password with globex's user, and the other way round.
    expect(await loginError(f.p1, { ...f.globex, password: f.acme.password })).toMatch(/^WRONGPASS/);
    const g = await ready(f.p1, f.globex);
    expect(await g.get("k")).toBeNull();
    expect(await g.call("ACL", "WHOAMI")).toBe(f.globex.user);
    // AUTH as another tenant on a logged-in connection is refused, the login kept.
    await expect(g.call("AUTH", f.acme.user, f.acme.password)).rejects.toThrow(/another tenant database/);
    expect(await g.call("ACL", "WHOAMI")).toBe(f.globex.user);
  });

  it("refuses administration and other clients' business with a clear error, in its place in a pipeline", async () => {
    const c = await ready(f.p1, f.acme);
    for (const cmd of [["CONFIG", "GET", "maxmemory"], ["MONITOR"], ["REPLICAOF", "NO", "ONE"], ["DEBUG", "SLEEP", "0"], ["SHUTDOWN"], ["ACL", "LIST"], ["CLIENT", "KILL", "ID", "1"], ["CLIENT", "LIST"], ["CLIENT", "PAUSE", "10"], ["SYNC"], ["FAILOVER"]]) {
      await expect(c.call(cmd[0]!, ...cmd.slice(1)), cmd.join(" ")).rejects.toThrow(/NOPERM .*tenantfleet proxy/);
    }
    const pipe = c.pipeline().set("a", "1").call("CONFIG", "GET", "x").get("a").call("CLIENT", "LIST").incr("a");
    const res = (await pipe.exec())!;
    expect(res[0]).toEqual([null, "OK"]);
    expect(String(res[1]![0])).toMatch(/NOPERM CONFIG/);
    expect(res[2]).toEqual([null, "1"]);
    expect(String(res[3]![0])).toMatch(/NOPERM CLIENT LIST/);
    expect(res[4]).toEqual([null, 2]);
    await expect(c.call("CLIENT", "TRACKING", "on", "REDIRECT", "5")).rejects.toThrow(/RESP3/);
  });

  it("MULTI/EXEC/DISCARD/WATCH, SELECT, CLIENT SETNAME/GETNAME/ID, EVAL/EVALSHA, FUNCTION", async () => {
    const c = await ready(f.p1, f.acme);
    expect(await c.multi().set("m1", "a").incr("m2").exec()).toEqual([
      [null, "OK"],
      [null, 1],
    ]);
    await c.watch("w");
    const other = await ready(f.p2, f.acme);
    await other.set("w", "changed");
    expect(await c.multi().set("w", "mine").exec()).toBeNull();
    expect(await c.select(3)).toBe("OK");
    await c.set("in3", "x");
    expect(await f.rs.admin(f.a1, async (a) => (await a.select(3), a.get("in3")))).toBe("x");
    expect(await c.client("SETNAME", "worker-1")).toBe("OK");
    expect(await c.client("GETNAME")).toBe("worker-1");
    expect(typeof (await c.client("ID"))).toBe("number");
    const sha = (await c.script("LOAD", "return redis.call('incr', KEYS[1])")) as string;
    expect(await c.evalsha(sha, 1, "s")).toBe(1);
    expect(await c.eval("return ARGV[1]", 0, "hi")).toBe("hi");
    await c.call("FUNCTION", "LOAD", "REPLACE", "#!lua name=tflib\nredis.register_function('tfdouble', function(keys, args) return args[1] * 2 end)");
    expect(await c.call("FCALL", "tfdouble", 0, 21)).toBe(42);
  });

  it("pub/sub (SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE) in RESP2 and RESP3, blocking BLPOP and XREADGROUP BLOCK", async () => {
    for (const protocol of [2, 3]) {
      const sub = await ready(f.p1, f.acme, { protocol } as RedisOptions);
      const pub = await ready(f.p2, f.acme);
      const got: string[] = [];
      sub.on("message", (ch, m) => got.push(`${ch}:${m}`));
      sub.on("pmessage", (_p, ch, m) => got.push(`p ${ch}:${m}`));
      sub.on("smessage", (ch, m) => got.push(`s ${ch}:${m}`));
      await sub.subscribe("news", "alerts");
      await sub.psubscribe("ev.*");
      await sub.ssubscribe("shard1");
      expect(await pub.publish("news", "a")).toBe(1);
      await pub.publish("ev.x", "b");
      await pub.spublish("shard1", "c");
      await pub.publish("alerts", "d");
      await sub.unsubscribe("news");
      await pub.publish("news", "lost");
      await pub.publish("alerts", "e");
      for (const end = Date.now() + 5000; got.length < 5 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 10));
      expect(got).toEqual(["news:a", "p ev.x:b", "s shard1:c", "alerts:d", "alerts:e"]);
      // (ioredis's unsubscribe() without channels hangs with a shard subscription, against Redis itself too)
      await sub.unsubscribe("alerts");
      await sub.punsubscribe("ev.*");
      await sub.sunsubscribe("shard1");
      expect(await sub.ping()).toBe("PONG");
      sub.disconnect();
    }
    const consumer = await ready(f.p1, f.acme);
    const producer = await ready(f.p2, f.acme);
    const popped = consumer.blpop("jobs", 5);
    await new Promise((r) => setTimeout(r, 100));
    await producer.rpush("jobs", "j1");
    expect(await popped).toEqual(["jobs", "j1"]);
    expect(await consumer.blpop("jobs", 0.2)).toBeNull();
    await producer.xgroup("CREATE", "stream", "g", "$", "MKSTREAM");
    const read = consumer.xreadgroup("GROUP", "g", "c1", "COUNT", 1, "BLOCK", 5000, "STREAMS", "stream", ">");
    await new Promise((r) => setTimeout(r, 100));
    const id = await producer.xadd("stream", "*", "f", "v");
    expect(await read).toEqual([["stream", [[id, ["f", "v"]]]]]);
  });

  it("serves redis-cli, also with inline commands", async () => {
    expect((await cli(f.p1, f.acme, ["set", "cli", "1"])).stdout.trim()).toBe("OK");
    expect((await cli(f.p1, f.acme, ["get", "cli"])).stdout.trim()).toBe("1");
    const piped = await cli(f.p2, f.acme, [], "INCR cli\nGET cli\n");
    expect(piped.stdout.trim().split("\n")).toEqual(["2", "2"]);
    const refused = await cli(f.p1, { ...f.acme, password: "nope" }, ["ping"]);
    expect(refused.stderr).toMatch(/WRONGPASS/);
    expect(refused.stdout).toMatch(/NOAUTH/);
  });
});

/** The instance's connections of `user` (CLIENT LIST, as the admin). */
const connectionsOf = (server: typeof f.a1, user: string) => f.rs.admin(server, async (a) => ((await a.call("CLIENT", "LIST")) as string).split("\n").filter((l) => l.includes(` user=${user} `)));

describe("Redis lanes: sessions share server connections", () => {
  it("60 clients on two proxies, each writing and reading its own keys pipelined: every reply is its own, over a handful of server connections", async () => {
    const before = (await connectionsOf(f.a1, f.acme.user)).length;
    const clients = await Promise.all(Array.from({ length: 60 }, (_, i) => ready(i % 2 ? f.p2 : f.p1, f.acme, { protocol: i % 3 ? 3 : 2 } as RedisOptions)));
    await Promise.all(
      clients.map(async (c, i) => {
        for (let round = 0; round < 20; round++) {
          const pipe = c.pipeline();
          pipe.set(`lane:${i}`, `${i}:${round}`).incr(`lane:n:${i}`).get(`lane:${i}`);
          const res = await pipe.exec();
          expect(res!.map(([e, v]) => e ?? v)).toEqual(["OK", round + 1, `${i}:${round}`]);
        }
      }),
    );
    // At most two proxies × RESP2 and RESP3 lanes more (earlier tests may have opened some); no session of its own (nothing here needs one).
    const after = (await connectionsOf(f.a1, f.acme.user)).length;
    expect(after - before).toBeLessThanOrEqual(4);
    expect(after).toBeLessThan(before + 60);
    for (const c of clients) c.disconnect();
  });

  it("a session that SELECTs another db gets a connection of its own after its lane commands are answered; the others stay on db 0", async () => {
    const a = await ready(f.p1, f.acme, { protocol: 2 } as RedisOptions);
    const b = await ready(f.p1, f.acme, { protocol: 2 } as RedisOptions);
    await a.set("db-check", "zero");
    const before = (await connectionsOf(f.a1, f.acme.user)).length;
    const pipe = a.pipeline();
    pipe.get("db-check").select(1).set("db-check", "one").get("db-check");
    expect((await pipe.exec())!.map(([e, v]) => e ?? v)).toEqual(["zero", "OK", "OK", "one"]);
    expect(await b.get("db-check")).toBe("zero");
    expect(await a.get("db-check")).toBe("one");
    const own = await connectionsOf(f.a1, f.acme.user);
    expect(own.length).toBe(before + 1);
    expect(own.filter((l) => / db=1 /.test(l))).toHaveLength(1);
    a.disconnect();
  });

  it("a lane that breaks under a command: that command gets an error reply (not a reset), the connection stays usable", async () => {
    const c = await ready(f.p2, f.acme, { protocol: 2 } as RedisOptions);
    expect(await c.set("lane-break", "before")).toBe("OK");
    // Hold writes on the instance, so the next SET is in flight on the lane when the lane is cut.
    await f.rs.admin(f.a1, (a) => a.call("CLIENT", "PAUSE", "3000", "WRITE"));
    try {
      const inFlight = c.set("lane-break", "lost");
      await new Promise((r) => setTimeout(r, 200));
      const lanes = (await connectionsOf(f.a1, f.acme.user)).filter((l) => / cmd=set /.test(l));
      expect(lanes.length).toBeGreaterThanOrEqual(1);
      await f.rs.admin(f.a1, async (a) => {
        for (const l of lanes) await a.call("CLIENT", "KILL", "ID", /id=(\d+)/.exec(l)![1]!);
      });
      await expect(inFlight).rejects.toThrow(/ERR tenantfleet: the server closed the connection before the command's reply came; it may or may not have run/);
    } finally {
      await f.rs.admin(f.a1, (a) => a.call("CLIENT", "UNPAUSE"));
    }
    expect(await c.get("lane-break")).toBe("before");
  });
});
