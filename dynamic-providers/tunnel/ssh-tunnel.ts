/**
 * Local port forwarding through an SSH bastion, so the migration code (which runs in the dynamic
 * providers on the operator's machine) can reach database servers that have no public address.
 *
 * One SSH connection per tunnel; one loopback listener per distinct target; every accepted socket
 * becomes a `direct-tcpip` channel (`ssh -L`). Callers hand `tunnel.local(target)` to `pg`,
 * `pg_dump`, … in place of the target, so nothing downstream knows a tunnel exists, and on the
 * local platform (no bastion) `withTunnel` maps every target to itself.
 *
 * No Pulumi imports, and `ssh2` is imported inside `openTunnel`: this module ends up in dynamic
 * providers' serialised closures (see DESIGN.md, "Dynamic providers: pitfalls").
 */
import { createHash } from "node:crypto";
import * as net from "node:net";
import type { ClientChannel } from "ssh2";

export interface Bastion {
  host: string;
  port: number;
  username: string;
  /** OpenSSH or PEM private key text (unencrypted). */
  privateKey: string;
  /** "SHA256:<base64>" as printed by `ssh-keygen -lf`; when set, any other host key is refused. */
  hostKeyFingerprint?: string;
}

export interface Endpoint {
  host: string;
  port: number;
}

export interface Tunnel {
  /** The loopback address that forwards to `target` (one local listener per distinct target). */
  local(target: Endpoint): Endpoint;
  /** Close listeners, live connections and the SSH connection. Idempotent. */
  close(): Promise<void>;
}

export interface TunnelOptions {
  /** How long the TCP connect + SSH handshake + authentication may take. Default 20 000 ms. */
  readyTimeoutMs?: number;
  /** SSH-level keepalive period; 3 unanswered keepalives end the connection. Default 10 000 ms. */
  keepaliveIntervalMs?: number;
  /**
   * Failures after the tunnel is open: a target the bastion could not connect to, or the SSH
   * connection dropping. The local client only sees its socket close (TCP has no way to carry
   * the reason), so this is where the reason goes; log it next to the client's own error.
   */
  onError?: (err: TunnelError) => void;
}

export type TunnelErrorKind = "config" | "unreachable" | "timeout" | "host-key" | "auth" | "forward" | "disconnected";

export class TunnelError extends Error {
  override readonly name = "TunnelError";
  constructor(
    readonly kind: TunnelErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The fingerprint `ssh-keygen -lf` prints for a raw (wire-format) public key. */
export function sshFingerprint(key: Buffer): string {
  return `SHA256:${createHash("sha256").update(key).digest("base64").replace(/=+$/, "")}`;
}

const key = (e: Endpoint): string => `${e.host}:${e.port}`;

export async function openTunnel(bastion: Bastion, targets: Endpoint[], opts: TunnelOptions = {}): Promise<Tunnel> {
  const expected = bastion.hostKeyFingerprint?.trim();
  if (expected !== undefined && !/^SHA256:[A-Za-z0-9+/]{43}$/.test(expected)) {
    // An MD5 "aa:bb:…" or a padded value would never match: say so instead of "mismatch".
    throw new TunnelError("config", `hostKeyFingerprint for SSH bastion ${key(bastion)} must look like "SHA256:<43 base64 chars>" (ssh-keygen -lf), got ${JSON.stringify(expected)}`);
  }
  const { Client } = await import("ssh2");
  const client = new Client();
  const who = `${bastion.username}@${bastion.host}`;
  const onError = opts.onError ?? (() => undefined);
  let presented: string | undefined;
  // "open" → "dropped" when the bastion goes away on its own, → "closed" by close().
  let state: "connecting" | "open" | "dropped" | "closed" = "connecting";

  await new Promise<void>((resolve, reject) => {
    // ssh2 can emit several errors for one failure; only the first one decides.
    const fail = (err: TunnelError) => {
      if (state !== "connecting") return;
      state = "closed";
      client.destroy();
      reject(err);
    };
    const onConnectError = (e: Error & { level?: string }) => fail(connectError(e));
    const onEarlyClose = () => fail(new TunnelError("unreachable", `SSH bastion ${key(bastion)} closed the connection before ${who} was logged in`));
    client.on("error", onConnectError).once("close", onEarlyClose);
    client.once("ready", () => {
      state = "open";
      // From here on errors and close mean something else; see below.
      client.off("error", onConnectError).off("close", onEarlyClose);
      resolve();
    });
    try {
      client.connect({
        host: bastion.host,
        port: bastion.port,
        username: bastion.username,
        privateKey: bastion.privateKey,
        readyTimeout: opts.readyTimeoutMs ?? 20_000,
        keepaliveInterval: opts.keepaliveIntervalMs ?? 10_000,
        keepaliveCountMax: 3,
        hostVerifier: (raw: Buffer) => {
          presented = sshFingerprint(raw);
          return expected === undefined || presented === expected;
        },
      });
    } catch (e) {
      // ssh2 parses the key synchronously: a bad key throws here, before any network traffic.
      fail(new TunnelError("config", `private key for ${who} cannot be used: ${(e as Error).message}`, { cause: e }));
    }
  });

  function connectError(e: Error & { level?: string }): TunnelError {
    if (expected !== undefined && presented !== undefined && presented !== expected) {
      return new TunnelError("host-key", `host key of SSH bastion ${key(bastion)} does not match: expected ${expected}, got ${presented}`, { cause: e });
    }
    switch (e.level) {
      case "client-authentication":
        return new TunnelError("auth", `SSH bastion ${key(bastion)} refused authentication for ${who} with the given private key (${e.message})`, { cause: e });
      case "client-timeout":
        return new TunnelError("timeout", `SSH bastion ${key(bastion)} did not complete login of ${who} within ${opts.readyTimeoutMs ?? 20_000} ms`, { cause: e });
      case "client-socket":
      case "client-dns":
        return new TunnelError("unreachable", `cannot reach SSH bastion ${key(bastion)}: ${e.message}`, { cause: e });
      default:
        return new TunnelError("unreachable", `SSH connection to bastion ${key(bastion)} as ${who} failed: ${e.message}`, { cause: e });
    }
  }

  // Past the login, an error means the connection is gone; keep a listener so it never throws.
  client.on("error", (e: Error) => {
    if (state === "open") onError(new TunnelError("disconnected", `SSH connection to bastion ${key(bastion)} failed: ${e.message}`, { cause: e }));
  });
  const sshClosed = new Promise<void>((resolve) =>
    client.once("close", () => {
      if (state === "open") {
        state = "dropped";
        onError(new TunnelError("disconnected", `SSH connection to bastion ${key(bastion)} closed; forwarded connections through it are gone`));
      }
      resolve();
    }),
  );

  const sockets = new Set<net.Socket>();
  const listeners = new Map<string, { server: net.Server; local: Endpoint }>();
  let closing: Promise<void> | undefined;

  function forward(sock: net.Socket, target: Endpoint): void {
    sockets.add(sock);
    sock.once("close", () => sockets.delete(sock));
    // A reset from the local client is its own business; the channel is closed on "close" below.
    sock.on("error", () => undefined);
    if (state !== "open") {
      sock.destroy();
      return;
    }
    client.forwardOut("127.0.0.1", sock.remotePort ?? 0, target.host, target.port, (err: Error | undefined, channel: ClientChannel) => {
      if (err) {
        sock.destroy();
        onError(new TunnelError("forward", `SSH bastion ${key(bastion)} could not open a connection to ${key(target)}: ${err.message}`, { cause: err }));
        return;
      }
      if (sock.destroyed) {
        channel.close();
        return;
      }
      channel.on("error", () => sock.destroy());
      sock.pipe(channel).pipe(sock);
      sock.once("close", () => channel.close());
      // Not destroy(): bytes the target sent just before closing may still sit in sock's buffer.
      channel.once("close", () => sock.end());
    });
  }

  try {
    for (const t of targets) {
      if (listeners.has(key(t))) continue;
      // allowHalfOpen: a client that shuts down its sending side still gets the rest of the reply.
      const server = net.createServer({ allowHalfOpen: true }, (sock) => forward(sock, t));
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => resolve());
      });
      const { port } = server.address() as net.AddressInfo;
      listeners.set(key(t), { server, local: { host: "127.0.0.1", port } });
    }
  } catch (e) {
    await close();
    throw e;
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      const wasOpen = state === "open";
      state = "closed";
      for (const s of sockets) s.destroy();
      await Promise.all([...listeners.values()].map(({ server }) => new Promise((r) => server.close(r))));
      if (wasOpen) {
        client.end();
        // end() waits for the bastion to close its side; do not hang on a bastion that never does.
        const t = setTimeout(() => client.destroy(), 2_000);
        await sshClosed;
        clearTimeout(t);
      }
    })();
    return closing;
  }

  return {
    local: (target) => {
      const l = listeners.get(key(target));
      if (!l) throw new TunnelError("config", `no tunnel to ${key(target)}: it was not among the targets given to openTunnel (${targets.map(key).join(", ")})`);
      return { ...l.local };
    },
    close,
  };
}

/**
 * Run `fn` with a tunnel to `targets`, closed afterwards whatever happens. Without a bastion (the
 * local platform) every target maps to itself, so callers have a single code path.
 */
export async function withTunnel<T>(
  bastion: Bastion | undefined,
  targets: Endpoint[],
  fn: (t: Pick<Tunnel, "local">) => Promise<T>,
  opts?: TunnelOptions,
): Promise<T> {
  if (!bastion) {
    const known = new Set(targets.map(key));
    return fn({
      local: (t) => {
        // Same check as through a bastion, so a missing target fails locally too, not first in the cloud.
        if (!known.has(key(t))) throw new TunnelError("config", `no tunnel to ${key(t)}: it was not among the targets (${[...known].join(", ")})`);
        return { ...t };
      },
    });
  }
  const tunnel = await openTunnel(bastion, targets, opts);
  try {
    return await fn({ local: tunnel.local });
  } finally {
    await tunnel.close();
  }
}

/** How a dynamic resource's inputs name the bastion (the private key is a separate, secret input). */
export interface BastionInputs {
  bastion?: { host: string; port: number; username: string; hostKeyFingerprint?: string };
  /** Secret. */
  bastionPrivateKey?: string;
}

/** The Bastion of a resource's inputs, or undefined on the local platform. Names what is missing. */
export function bastionOf(i: BastionInputs): Bastion | undefined {
  if (!i.bastion) return undefined;
  if (!i.bastionPrivateKey) {
    throw new TunnelError("config", `servers are reached through the bastion ${i.bastion.host}, but no private key is configured: set it with \`pulumi config set --secret tenantfleet:bastionPrivateKey < key\``);
  }
  return { ...i.bastion, privateKey: i.bastionPrivateKey };
}

/**
 * withTunnel for a provider step: a connection the bastion could not forward shows to the client
 * only as a closed socket, so the bastion's reasons are added to the error the step fails with.
 */
export async function throughBastion<T>(bastion: Bastion | undefined, targets: Endpoint[], fn: (t: Pick<Tunnel, "local">) => Promise<T>): Promise<T> {
  const reasons = new Set<string>();
  try {
    return await withTunnel(bastion, targets, fn, { onError: (e) => reasons.add(e.message) });
  } catch (e) {
    if (reasons.size > 0 && e instanceof Error) e.message += ` (bastion ${bastion?.host}: ${[...reasons].join("; ")})`;
    throw e;
  }
}
