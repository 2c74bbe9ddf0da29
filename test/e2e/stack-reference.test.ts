/**
 * The `fleet` stack output as a contract, read the way another repo reads it: a throw-away producer
 * stack of this program (real CLI, real servers), and a second program (test/fixtures/consumer/)
 * with a `pulumi.StackReference` to it, on the same file backend. One producer `up`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, promises as fs } from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { setup } from "../../scripts/setup";
import { pulumiOk, runPulumi } from "../../scripts/lib/pulumi-cli";
import { backendDir, repoRoot } from "../../scripts/lib/pulumi-env";
import type { Toolchain } from "../../scripts/lib/toolchain";
import { stateRoot } from "../../dynamic-providers/local-server/state";
import type { FleetOutput } from "../../components/fleet-output";

const stack = `e2e-ref-${randomBytes(3).toString("hex")}`;
const producerFile = path.join(repoRoot, "stacks", `Pulumi.${stack}.yaml`);
const consumerDir = path.join(repoRoot, "test", "fixtures", "consumer");
const consumerFile = path.join(consumerDir, `Pulumi.${stack}.yaml`);
/** On the file backend every stack is `organization/<project>/<stack>`. */
const producerName = `organization/tenantfleet/${stack}`;
let tc: Toolchain;

const tenants = {
  acme: {
    databases: {
      app: { engine: "postgres", isolation: "shared", region: "eu-west" },
      cache: { engine: "redis", isolation: "shared", region: "eu-west" },
    },
  },
  globex: { databases: { app: { engine: "postgres", isolation: "dedicated", region: "us-east" } } },
};

const producer = (args: string[]) => pulumiOk(tc, [...args, "--stack", stack, "--non-interactive"]);
const consumer = (args: string[]) => pulumiOk(tc, [...args, "--stack", stack, "--non-interactive"], { cwd: consumerDir });

async function json<T>(run: Promise<{ stdout: string }>): Promise<T> {
  return JSON.parse((await run).stdout) as T;
}

interface ConsumerOutputs {
  fleetIsSecret: boolean;
  fleetDetailsField: string;
  acmeAppRegionWithoutUnsecret: string;
  contractVersion: number;
  platform: string;
  tenants: string[];
  postgresEndpoints: string[];
  acmeAppRegion: string;
  acmeAppIsolation: string;
  acmeAppEngine: string;
  acmeAppConnectionString: string;
}

/** Producer `fleet` with and without secrets, consumer outputs with and without secrets. */
let fleetPlain: FleetOutput;
let fleetSecret: FleetOutput;
let consumerPlain: ConsumerOutputs;
let consumerSecret: ConsumerOutputs;
/** Every secret the producer exports (tenant passwords, server admin passwords, the catalog URL). */
let producerSecrets: string[];

/** The secret leaves of `--show-secrets` output: the values that show as `[secret]` without it. */
function secretLeaves(plain: unknown, shown: unknown): string[] {
  if (plain === "[secret]") return typeof shown === "string" ? [shown] : [JSON.stringify(shown)];
  if (plain && typeof plain === "object") {
    return Object.entries(plain).flatMap(([k, v]) => secretLeaves(v, (shown as Record<string, unknown>)[k]));
  }
  return [];
}

beforeAll(async () => {
  tc = await setup({ quiet: true });
  await fs.writeFile(
    producerFile,
    [
      "config:",
      "  tenantfleet:platform: local",
      "  tenantfleet:regions: [eu-west, us-east]",
      "  tenantfleet:proxyReplicas: 1",
      "  tenantfleet:protectTenantDatabases: false",
      `  tenantfleet:tenants: ${JSON.stringify(tenants)}`,
    ].join("\n") + "\n",
  );
  await producer(["stack", "init"]);
  await producer(["up", "--yes", "--skip-preview"]);
  fleetPlain = await json(producer(["stack", "output", "fleet", "--json"]));
  fleetSecret = await json(producer(["stack", "output", "fleet", "--json", "--show-secrets"]));
  const leaves = secretLeaves(
    await json(producer(["stack", "output", "--json"])),
    await json(producer(["stack", "output", "--json", "--show-secrets"])),
  );
  producerSecrets = [...new Set(leaves)];

  await fs.writeFile(consumerFile, `config:\n  tenantfleet-consumer:producerStack: ${producerName}\n`);
  await consumer(["stack", "init"]);
  await consumer(["up", "--yes", "--skip-preview"]);
  consumerPlain = await json(consumer(["stack", "output", "--json"]));
  consumerSecret = await json(consumer(["stack", "output", "--json", "--show-secrets"]));
});

afterAll(async () => {
  if (!tc) return;
  await runPulumi(tc, ["destroy", "--yes", "--stack", stack, "--non-interactive"], { cwd: consumerDir });
  await runPulumi(tc, ["stack", "rm", "--yes", "--force", "--stack", stack, "--non-interactive"], { cwd: consumerDir });
  await runPulumi(tc, ["destroy", "--yes", "--stack", stack, "--non-interactive"]);
  await runPulumi(tc, ["stack", "rm", "--yes", "--force", "--stack", stack, "--non-interactive"]);
  await fs.rm(consumerFile, { force: true });
  await fs.rm(producerFile, { force: true });
  await fs.rm(path.join(stateRoot(), stack), { recursive: true, force: true });
});

describe(`the fleet output through a StackReference (${stack})`, () => {
  it("the producer's fleet output has exactly the documented keys", () => {
    expect(Object.keys(fleetSecret).sort()).toEqual(["platform", "proxies", "tenants", "version"]);
    expect(fleetSecret.version).toBe(1);
    expect(fleetSecret.platform).toBe("local");
    expect(Object.keys(fleetSecret.proxies)).toEqual(["postgres", "redis"]);
    expect(fleetSecret.proxies.redis!.endpoints).toEqual([expect.stringMatching(/^127\.0\.0\.1:\d+$/)]);
    expect(Object.keys(fleetSecret.proxies.postgres!)).toEqual(["endpoints"]);
    expect(fleetSecret.proxies.postgres!.endpoints).toEqual([expect.stringMatching(/^127\.0\.0\.1:\d+$/)]);
    expect(Object.keys(fleetSecret.tenants).sort()).toEqual(["acme", "globex"]);
    expect(Object.keys(fleetSecret.tenants.acme!).sort()).toEqual(["app", "cache"]);
    expect(Object.keys(fleetSecret.tenants.globex!)).toEqual(["app"]);
    const { acme, globex } = fleetSecret.tenants;
    expect(Object.keys(acme!.app!).sort()).toEqual(["connectionString", "engine", "isolation", "region"]);
    expect(Object.keys(globex!.app!).sort()).toEqual(["connectionString", "engine", "isolation", "region"]);
    expect(acme!.cache).toMatchObject({ engine: "redis", isolation: "shared", region: "eu-west" });
    expect(acme!.cache!.connectionString).toMatch(new RegExp(`^redis://cache__acme:[^@]+@${fleetSecret.proxies.redis!.endpoints[0]}$`));
    expect(acme!.app).toMatchObject({ engine: "postgres", isolation: "shared", region: "eu-west" });
    expect(globex!.app).toMatchObject({ engine: "postgres", isolation: "dedicated", region: "us-east" });
    const endpoints = fleetSecret.proxies.postgres!.endpoints.join(",");
    expect(acme!.app!.connectionString).toMatch(new RegExp(`^postgresql://app__acme:[^@]+@${endpoints}/app__acme$`));
    expect(globex!.app!.connectionString).toMatch(new RegExp(`^postgresql://app__globex:[^@]+@${endpoints}/app__globex$`));
  });

  it("the producer keeps its secrets at the leaves: only the connection strings are [secret]", () => {
    const secret = structuredClone(fleetSecret);
    secret.tenants.acme!.app!.connectionString = "[secret]";
    secret.tenants.globex!.app!.connectionString = "[secret]";
    secret.tenants.acme!.cache!.connectionString = "[secret]";
    expect(fleetPlain).toEqual(secret);
  });

  it("the StackReference marks the whole fleet output secret (it holds secrets), not only the leaves", () => {
    expect(consumerPlain.fleetIsSecret).toBe(true);
    expect(consumerPlain.fleetDetailsField).toBe("secretValue");
    // so a plain field read with `apply` alone is secret too: the consumer must `unsecret` it
    expect(consumerPlain.acmeAppRegionWithoutUnsecret).toBe("[secret]");
    expect(consumerSecret.acmeAppRegionWithoutUnsecret).toBe("eu-west");
  });

  it("the consumer's plain values equal the producer's fleet output", () => {
    const f = fleetSecret;
    expect(consumerPlain).toMatchObject({
      contractVersion: f.version,
      platform: f.platform,
      tenants: Object.keys(f.tenants).sort(),
      postgresEndpoints: f.proxies.postgres!.endpoints,
      acmeAppRegion: f.tenants.acme!.app!.region,
      acmeAppIsolation: f.tenants.acme!.app!.isolation,
      acmeAppEngine: f.tenants.acme!.app!.engine,
    });
    const { acmeAppConnectionString: _, acmeAppRegionWithoutUnsecret: __, ...plainOnes } = consumerPlain;
    expect(consumerSecret).toMatchObject(plainOnes);
  });

  it("the connection string stays secret in the consumer, and is the producer's", () => {
    expect(consumerPlain.acmeAppConnectionString).toBe("[secret]");
    expect(consumerSecret.acmeAppConnectionString).toBe(fleetSecret.tenants.acme!.app!.connectionString);
  });

  it("the consumer's state file holds none of the producer's secrets in plain text", async () => {
    const stateFile = path.join(backendDir(), ".pulumi", "stacks", "tenantfleet-consumer", `${stack}.json`);
    expect(existsSync(stateFile)).toBe(true);
    const state = await fs.readFile(stateFile, "utf8");
    for (const db of [fleetSecret.tenants.acme!.app!, fleetSecret.tenants.globex!.app!, fleetSecret.tenants.acme!.cache!]) {
      const password = decodeURIComponent(new URL(db.connectionString!).password);
      expect(password.length).toBeGreaterThan(8);
      expect(state).not.toContain(password);
      expect(state).not.toContain(new URL(db.connectionString!).password);
    }
    // the StackReference resource's state holds every producer output: servers' admin passwords,
    // the catalog URL; each only as ciphertext
    // 3 connection strings (in `fleet`), 4 server admin passwords (a Redis host and acme's cache's instance on it), catalogUrl
    expect(producerSecrets.length).toBe(8);
    for (const secret of producerSecrets) expect(state).not.toContain(secret);
    expect(state).toContain("ciphertext");
  });
});
