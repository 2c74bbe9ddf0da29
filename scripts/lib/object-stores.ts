/**
 * Real S3 and GCS protocol servers on 127.0.0.1 for tests: gofakes3 and fake-gcs-server (built by
 * `npm run setup`, see test-servers.ts), each our own child process on a free loopback port, data in
 * memory, with one bucket created before it is handed out. `stop()` ends the process; nothing is
 * left on disk.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as net from "node:net";
import { pidAlive, waitFor } from "../../dynamic-providers/local-server/process";
import { testServerBinary, type TestServerName } from "./test-servers";
import { freePort } from "./free-port";

export interface ObjectStoreServer {
  /** `http://127.0.0.1:<port>`: the `endpoint` of a BackupBucket. */
  endpoint: string;
  port: number;
  /** The bucket created at start. */
  bucket: string;
  pid: number;
  /** The server's output so far, its last 64 KB (gofakes3: one line per operation; fake-gcs-server: an access log). */
  output(): string;
  /** Stop the server (SIGTERM, SIGKILL after 5 s). Idempotent. */
  stop(): Promise<void>;
}


/** HTTP status of a request, or undefined when nothing answered. */
async function status(url: string, init?: RequestInit): Promise<number | undefined> {
  try {
    const r = await fetch(url, { ...init, signal: AbortSignal.timeout(2000) });
    await r.arrayBuffer();
    return r.status;
  } catch {
    return undefined;
  }
}

interface Spec {
  name: TestServerName;
  args(port: number): string[];
  /** Create the bucket if the server does not do it itself; true once the bucket answers. */
  ready(endpoint: string, bucket: string): Promise<boolean>;
}

async function start(spec: Spec, bucket: string): Promise<ObjectStoreServer> {
  const bin = testServerBinary(spec.name);
  // The port is found free and then handed to the server: another process may take it in between, so retry.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const endpoint = `http://127.0.0.1:${port}`;
    const child: ChildProcess = spawn(bin, spec.args(port), { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const keep = (d: Buffer) => {
      output = (output + d.toString()).slice(-64 * 1024);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    let exited = false;
    const exit = new Promise<void>((resolve) => child.once("exit", () => ((exited = true), resolve())));
    child.once("error", (e) => keep(Buffer.from(`spawn ${bin}: ${e.message}\n`)));

    const up = await waitFor(`${spec.name} on ${endpoint}`, async () => exited || (await spec.ready(endpoint, bucket)), { timeoutMs: 20_000, intervalMs: 100 }).then(
      () => !exited,
      () => false,
    );
    if (!up) {
      if (exited && /address already in use/i.test(output) && attempt < 3) continue;
      child.kill("SIGKILL");
      await exit;
      const tail = output.trimEnd().split("\n").slice(-12).join("\n");
      throw new Error(`${spec.name} did not serve bucket ${bucket} on ${endpoint}${exited ? ` (exit code ${child.exitCode})` : ""}; output:\n${tail}`);
    }

    let stopping: Promise<void> | undefined;
    return {
      endpoint,
      port,
      bucket,
      pid: child.pid!,
      output: () => output,
      stop: () =>
        (stopping ??= (async () => {
          if (exited || !pidAlive(child.pid)) return;
          child.kill("SIGTERM");
          const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
          await exit;
          clearTimeout(killer);
        })()),
    };
  }
}

/** gofakes3 (S3, path-style) with `bucket` created at start. */
export function startFakeS3(bucket: string): Promise<ObjectStoreServer> {
  return start(
    {
      name: "gofakes3",
      args: (port) => ["-backend", "memory", "-host", `127.0.0.1:${port}`, "-initialbucket", bucket],
      // HEAD /<bucket> answers 200 once the server listens with the bucket made.
      ready: async (endpoint, b) => (await status(`${endpoint}/${encodeURIComponent(b)}`, { method: "HEAD" })) === 200,
    },
    bucket,
  );
}

/** fake-gcs-server (GCS JSON API over http) with `bucket` created through that API; its output is an access log. */
export function startFakeGcs(bucket: string): Promise<ObjectStoreServer> {
  return start(
    {
      name: "fake-gcs-server",
      args: (port) => ["-scheme", "http", "-host", "127.0.0.1", "-port", String(port), "-backend", "memory", "-external-url", `http://127.0.0.1:${port}`, "-log-level", "info"],
      ready: async (endpoint, b) => {
        const get = await status(`${endpoint}/storage/v1/b/${encodeURIComponent(b)}`);
        if (get === 200) return true;
        if (get === undefined) return false; // not listening yet
        await status(`${endpoint}/storage/v1/b?project=test`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: b }) });
        return (await status(`${endpoint}/storage/v1/b/${encodeURIComponent(b)}`)) === 200;
      },
    },
    bucket,
  );
}
