/**
 * A real OpenSSH server on 127.0.0.1 for tests: the stand-in for a cloud SSH bastion. It is our
 * own `sshd -D` child with everything (host key, authorized_keys, config, pid file, log) in a temp
 * dir, never the system's sshd service, and it lets in exactly one generated client key.
 */
import { spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, promises as fs, rmSync } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { isRoot, logTail, pidAlive, portOpen, run, waitFor } from "../../dynamic-providers/local-server/process";
import type { Bastion } from "../../dynamic-providers/tunnel/ssh-tunnel";
import { freePort } from "./free-port";

export const SSHD = "/usr/sbin/sshd";

export interface LocalSshd extends Required<Bastion> {
  dir: string;
  /** The listening sshd's pid. */
  pid: number;
  /** Pids of the per-connection sshd processes (one per logged-in SSH connection, children of `pid`). */
  connectionPids(): Promise<number[]>;
  /** sshd's own log (LogLevel DEBUG1: it names every forwarded connection's target). */
  log(): Promise<string>;
  /** Stop sshd and remove its dir. Idempotent. */
  stop(): Promise<void>;
}

export interface KeyPair {
  privateKey: string;
  publicKey: string;
  /** "SHA256:…", as `ssh-keygen -lf` prints it. */
  fingerprint: string;
}

/** A new ed25519 key pair made by the real ssh-keygen, as an operator would make one. */
export async function generateKeyPair(dir: string, name: string): Promise<KeyPair> {
  const file = path.join(dir, name);
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `tenantfleet-test-${name}`, "-f", file]);
  return {
    privateKey: await fs.readFile(file, "utf8"),
    publicKey: await fs.readFile(`${file}.pub`, "utf8"),
    fingerprint: await fingerprintOf(`${file}.pub`),
  };
}

async function fingerprintOf(pubFile: string): Promise<string> {
  const { stdout } = await run("ssh-keygen", ["-l", "-E", "sha256", "-f", pubFile]);
  const fp = /SHA256:[A-Za-z0-9+/]+/.exec(stdout)?.[0];
  if (!fp) throw new Error(`no SHA256 fingerprint in ssh-keygen output: ${stdout.trim()}`);
  return fp;
}

async function childrenOf(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const name of await fs.readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await fs.readFile(`/proc/${name}/stat`, "utf8");
      // Fields after the parenthesised command: state, ppid, …
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}


export async function startLocalSshd(): Promise<LocalSshd> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tf-sshd-"));
  try {
    return await start(dir);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

async function start(dir: string): Promise<LocalSshd> {
  const hostKeyFile = path.join(dir, "ssh_host_ed25519_key");
  const host = await generateKeyPair(dir, "ssh_host_ed25519_key");
  const clientKey = await generateKeyPair(dir, "client_key");
  await fs.writeFile(path.join(dir, "authorized_keys"), clientKey.publicKey, { mode: 0o600 });
  if (isRoot()) {
    // The privilege separation dir Debian's service unit would create; sshd refuses to start without it.
    await fs.mkdir("/run/sshd", { recursive: true, mode: 0o755 });
  }
  const username = os.userInfo().username;
  const logFile = path.join(dir, "sshd.log");
  const pidFile = path.join(dir, "sshd.pid");

  // The port is found free and then handed to sshd: another process may take it in between, so retry.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const config = path.join(dir, "sshd_config");
    await fs.writeFile(
      config,
      [
        `ListenAddress 127.0.0.1:${port}`,
        `HostKey ${hostKeyFile}`,
        `PidFile ${pidFile}`,
        `AuthorizedKeysFile ${path.join(dir, "authorized_keys")}`,
        // The temp dir's modes are not what sshd demands of a home dir.
        "StrictModes no",
        "UsePAM no",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        `PermitRootLogin ${isRoot() ? "prohibit-password" : "no"}`,
        `AllowUsers ${username}`,
        "AllowTcpForwarding yes",
        "X11Forwarding no",
        "PrintMotd no",
        "LogLevel DEBUG1",
        "",
      ].join("\n"),
    );
    // Config errors are reported by `sshd -t` with a readable message, where `-D` would just exit.
    await run(SSHD, ["-t", "-f", config]);
    const fd = openSync(logFile, "a");
    // sshd re-execs itself per connection and insists on an absolute path.
    const child = spawn(SSHD, ["-D", "-e", "-f", config], { stdio: ["ignore", fd, fd] });
    closeSync(fd);
    let exited = false;
    const exit = new Promise<void>((resolve) => child.once("exit", () => ((exited = true), resolve())));
    child.once("error", () => undefined); // surfaces as the exit below

    const up = await waitFor(`sshd on 127.0.0.1:${port}`, async () => exited || (await portOpen(port)), { timeoutMs: 15_000, logFile }).then(
      () => !exited,
      () => false,
    );
    if (!up) {
      const tail = await logTail(logFile, 12);
      if (exited && /Address already in use/.test(tail) && attempt < 3) continue;
      child.kill("SIGKILL");
      await exit;
      throw new Error(`sshd did not start on 127.0.0.1:${port}${exited ? ` (exit code ${child.exitCode})` : ""}; log:\n${tail}`);
    }

    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> =>
      (stopping ??= (async () => {
        if (!exited && pidAlive(child.pid)) {
          child.kill("SIGTERM");
          await exit;
        }
        rmSync(dir, { recursive: true, force: true });
      })());

    return {
      host: "127.0.0.1",
      port,
      username,
      privateKey: clientKey.privateKey,
      hostKeyFingerprint: host.fingerprint,
      dir,
      pid: child.pid!,
      connectionPids: () => childrenOf(child.pid!),
      log: () => fs.readFile(logFile, "utf8"),
      stop,
    };
  }
}
