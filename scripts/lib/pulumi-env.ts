/**
 * The environment every `pulumi` run of this project gets: fully offline, a file backend inside
 * the repo, the toolchain and the dynamic-provider shim on PATH.
 */
import * as path from "node:path";

/** Passphrase of the `local` stack (and of the tests' temporary stacks). It protects nothing
 * real: the local stack's secrets are admin passwords of servers on 127.0.0.1. Any other stack
 * must set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE itself. */
export const LOCAL_PASSPHRASE = "tenantfleet-local";

export const repoRoot = path.resolve(__dirname, "..", "..");

export function backendDir(root = repoRoot): string {
  return path.join(root, ".pulumi-state");
}

export interface PulumiEnvOptions {
  /** Directory of `pulumi` and `pulumi-language-nodejs`. */
  binDir: string;
  root?: string;
  base?: NodeJS.ProcessEnv;
}

export function pulumiEnv({ binDir, root = repoRoot, base = process.env }: PulumiEnvOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...base,
    PATH: [binDir, path.join(root, "bin"), path.join(root, "node_modules", ".bin"), base.PATH ?? ""].join(
      path.delimiter,
    ),
    PULUMI_BACKEND_URL: base.PULUMI_BACKEND_URL ?? `file://${backendDir(root)}`,
    PULUMI_SKIP_UPDATE_CHECK: "true",
    // The program depends on @pulumi/aws and @pulumi/gcp, but the local platform registers none of
    // their resources: never try to download their plugins.
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_SKIP_CONFIRMATIONS: "true",
    PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
    // The program runs in stacks/, where ts-node would not find the project's tsconfig.json.
    PULUMI_NODEJS_TSCONFIG_PATH: base.PULUMI_NODEJS_TSCONFIG_PATH ?? path.join(root, "tsconfig.json"),
    // Types are checked by `npm run typecheck` (and CI), not again at every preview.
    PULUMI_NODEJS_TRANSPILE_ONLY: base.PULUMI_NODEJS_TRANSPILE_ONLY ?? "true",
  };
  if (!base.PULUMI_CONFIG_PASSPHRASE && !base.PULUMI_CONFIG_PASSPHRASE_FILE) {
    env.PULUMI_CONFIG_PASSPHRASE = LOCAL_PASSPHRASE;
  }
  return env;
}
