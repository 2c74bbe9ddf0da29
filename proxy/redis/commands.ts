/**
 * What the proxy must know of Redis commands: those a tenant may not run through a shared proxy,
 * the pub/sub family (how many replies each sends), and the blocking commands (where their
 * timeout is, so a drain can release one on the old server and issue it again on the new one
 * with the time it has left). proxy/README.md lists the refusals.
 */

/** Refused with `-NOPERM`: server administration, replication, other clients, and what would reach beyond the tenant's own instance. */
const REFUSED: Record<string, string> = {
  monitor: "it would show the instance's traffic to a client",
  config: "the instance's configuration is tenantfleet's",
  replicaof: "replication is tenantfleet's (a move uses it)",
  slaveof: "replication is tenantfleet's (a move uses it)",
  failover: "replication is tenantfleet's (a move uses it)",
  sync: "replication is tenantfleet's",
  psync: "replication is tenantfleet's",
  replconf: "replication is tenantfleet's",
  debug: "it can stop or corrupt the instance",
  shutdown: "the instance's life is tenantfleet's",
  acl: "users are tenantfleet's (ACL WHOAMI is answered)",
  module: "modules are tenantfleet's",
  save: "persistence is tenantfleet's",
  bgsave: "persistence is tenantfleet's",
  bgrewriteaof: "persistence is tenantfleet's",
  lastsave: "persistence is tenantfleet's",
  migrate: "it would connect from the instance to another server",
  cluster: "tenant instances are not clusters",
  slowlog: "it shows other clients' commands",
  latency: "server diagnostics are tenantfleet's",
  role: "replication is tenantfleet's",
  pfdebug: "a debugging command",
  pfselftest: "a debugging command",
  sentinel: "not a sentinel",
  waitaof: "persistence is tenantfleet's",
};

/** CLIENT subcommands a tenant may run; the others name or affect other clients. */
const CLIENT_ALLOWED = new Set(["setname", "getname", "id", "info", "tracking", "trackinginfo", "caching", "getredir", "no-touch", "setinfo", "help"]);

/** Why `args` (name lower-cased first) is refused, or undefined when it may run. */
export function refusal(name: string, args: Buffer[]): string | undefined {
  const why = REFUSED[name];
  if (why !== undefined) {
    if (name === "acl" && sub(args) === "whoami") return undefined;
    return `NOPERM ${name.toUpperCase()} is not available through the tenantfleet proxy: ${why}`;
  }
  if (name === "client") {
    const s = sub(args);
    if (s === "reply") return `ERR CLIENT REPLY is not available through the tenantfleet proxy: it pairs every command with its reply`;
    if (!CLIENT_ALLOWED.has(s)) return `NOPERM CLIENT ${s.toUpperCase()} is not available through the tenantfleet proxy: it concerns other clients of the instance`;
    if (s === "tracking" && args.some((a) => a.length === 8 && a.toString("latin1").toLowerCase() === "redirect")) {
      return `ERR CLIENT TRACKING REDIRECT is not available through the tenantfleet proxy (connection ids are the server's and change with a move): use RESP3 (HELLO 3), where invalidations come on the same connection`;
    }
  }
  return undefined;
}

export const sub = (args: Buffer[]): string => (args[1] ? args[1].toString("latin1").toLowerCase() : "");

export type SubscribeKind = "subscribe" | "psubscribe" | "ssubscribe";

/** The pub/sub commands: what they do, and which confirmations answer them. */
export const PUBSUB: Record<string, { kind: SubscribeKind; adds: boolean }> = {
  subscribe: { kind: "subscribe", adds: true },
  psubscribe: { kind: "psubscribe", adds: true },
  ssubscribe: { kind: "ssubscribe", adds: true },
  unsubscribe: { kind: "subscribe", adds: false },
  punsubscribe: { kind: "psubscribe", adds: false },
  sunsubscribe: { kind: "ssubscribe", adds: false },
};

/** First element of a message a subscribed connection receives unasked. */
export const PUSH_KINDS = new Set(["message", "pmessage", "smessage", "invalidate"]);
/** First element of a subscription confirmation → the command family it answers. */
export const CONFIRMATIONS: Record<string, SubscribeKind> = {
  subscribe: "subscribe",
  unsubscribe: "subscribe",
  psubscribe: "psubscribe",
  punsubscribe: "psubscribe",
  ssubscribe: "ssubscribe",
  sunsubscribe: "ssubscribe",
};

/** Where a blocking command's timeout is, and its unit. */
export interface BlockingTimeout {
  index: number;
  unit: "s" | "ms";
}

/** The timeout of a blocking command (undefined for a command that does not block, or an XREAD without BLOCK). */
export function blockingTimeout(name: string, args: Buffer[]): BlockingTimeout | undefined {
  switch (name) {
    case "blpop":
    case "brpop":
    case "brpoplpush":
    case "blmove":
    case "bzpopmin":
    case "bzpopmax":
      return args.length >= 3 ? { index: args.length - 1, unit: "s" } : undefined;
    case "blmpop":
    case "bzmpop":
      return args.length >= 2 ? { index: 1, unit: "s" } : undefined;
    case "xread":
    case "xreadgroup": {
      for (let i = 1; i < args.length - 1; i++) {
        const a = args[i]!.toString("latin1").toLowerCase();
        if (a === "streams") return undefined;
        if (a === "block") return { index: i + 1, unit: "ms" };
      }
      return undefined;
    }
    default:
      return undefined;
  }
}

/** A blocking command's timeout in ms (0: forever), NaN when it is not a number (the server will say so). */
export function timeoutMs(args: Buffer[], t: BlockingTimeout): number {
  const v = Number(args[t.index]!.toString("latin1"));
  return t.unit === "s" ? v * 1000 : v;
}

/** The same command with `ms` left (never 0, which would mean forever). */
export function withTimeout(args: Buffer[], t: BlockingTimeout, ms: number): Buffer[] {
  const copy = args.slice();
  const v = t.unit === "s" ? Math.max(0.001, ms / 1000).toFixed(3) : String(Math.max(1, Math.ceil(ms)));
  copy[t.index] = Buffer.from(v);
  return copy;
}

/**
 * Commands that leave state on the connection they run on, or hold it: a session that runs one
 * needs a connection of its own (it cannot ride a lane shared with other sessions). HELLO and
 * RESET after the login are the session's to decide (session.ts).
 */
export function needsOwnConnection(name: string, args: Buffer[]): boolean {
  switch (name) {
    case "select":
      return !(args.length === 2 && args[1]!.toString("latin1") === "0");
    case "multi":
    case "watch":
    case "wait":
    case "readonly":
    case "readwrite":
    case "asking":
      return true;
    case "client":
      return setinfoAttribute(args) === undefined; // SETINFO: what the instance accepted is carried to any later connection
  }
  return PUBSUB[name] !== undefined || blockingTimeout(name, args) !== undefined;
}

/** `CLIENT SETINFO LIB-NAME|LIB-VER <value>`: the attribute, lower-cased; undefined for anything else. */
export function setinfoAttribute(args: Buffer[]): string | undefined {
  if (args.length !== 4 || sub(args) !== "setinfo") return undefined;
  const attr = args[2]!.toString("latin1").toLowerCase();
  if (attr !== "lib-name" && attr !== "lib-ver") return undefined;
  // Redis refuses spaces and newlines in the value: such a call goes to the server, which says so.
  return /[\s]/.test(args[3]!.toString("latin1")) ? undefined : attr;
}
