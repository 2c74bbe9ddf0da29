/**
 * The proxy program (proxy/main.ts) as one JavaScript file for proxy hosts: bundled with esbuild,
 * its npm dependencies included, for the Node.js of the VM image's distribution (Debian 12: 18).
 * The build is deterministic, so the uploaded object only changes when the proxy's code does.
 */
import { buildSync } from "esbuild";
import { mkdirSync } from "node:fs";
import * as path from "node:path";

/** Node.js major version of the proxy hosts' distribution package. */
export const PROXY_NODE_TARGET = "node18";

export function buildProxyBundle(repoRoot: string, outDir: string): string {
  mkdirSync(outDir, { recursive: true });
  const outfile = path.join(outDir, "proxy.js");
  buildSync({
    entryPoints: [path.join(repoRoot, "proxy", "main.ts")],
    bundle: true,
    platform: "node",
    target: PROXY_NODE_TARGET,
    format: "cjs",
    outfile,
    // pino's optional pretty-printer and pg's optional native binding are not used by the proxy.
    external: ["pino-pretty", "pg-native"],
    legalComments: "inline",
    logLevel: "error",
  });
  return outfile;
}
