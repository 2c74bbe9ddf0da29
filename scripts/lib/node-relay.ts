/**
 * Starts the Node.js baseline of `npm run bench:proxy` (node-relay-main.mjs: a byte relay, or a
 * process that only holds connections) as its own process, so its CPU and memory are measured
 * like the proxy's and PgBouncer's.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import * as readline from "node:readline";

export interface NodeRelayProcess {
  host: string;
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** `target` relays to it; without one, the process accepts connections and holds them. */
export async function startNodeRelay(target?: { host: string; port: number }): Promise<NodeRelayProcess> {
  const main = path.join(__dirname, "node-relay-main.mjs");
  const child = spawn(process.execPath, [main, ...(target ? [target.host, String(target.port)] : ["--hold"])], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const port = await new Promise<number>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).once("line", (line) => {
      try {
        resolve(Number((JSON.parse(line) as { port: number }).port));
      } catch {
        reject(new Error(`node relay printed ${line}`));
      }
    });
    child.once("exit", (code) => reject(new Error(`node relay exited ${code}: ${stderr.trim()}`)));
  });
  return {
    host: "127.0.0.1",
    port,
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}
