import { describe, expect, it } from "vitest";
import { formatProblems, validateFleetConfig, type RawFleetConfig } from "../../stacks/config";

const valid = (): RawFleetConfig => ({
  regions: ["eu-west", "us-east"],
  tenants: {
    acme: {
      databases: {
        app: { engine: "postgres", isolation: "dedicated", region: "eu-west" },
        cache: { engine: "redis", isolation: "shared", region: "eu-west" },
      },
    },
    globex: { databases: { app: { engine: "mysql", isolation: "shared", region: "us-east" } } },
  },
});

function problemsOf(raw: RawFleetConfig) {
  const r = validateFleetConfig(raw);
  if (r.ok) throw new Error("expected the config to be rejected");
  return r.problems;
}

describe("validateFleetConfig", () => {
  it("accepts a valid fleet and flattens it to one spec per tenant database", () => {
    const r = validateFleetConfig(valid());
    expect(r).toEqual({
      ok: true,
      spec: {
        platform: "local",
        regions: ["eu-west", "us-east"],
        databases: [
          { tenant: "acme", database: "app", engine: "postgres", isolation: "dedicated", region: "eu-west" },
          { tenant: "acme", database: "cache", engine: "redis", isolation: "shared", region: "eu-west" },
          { tenant: "globex", database: "app", engine: "mysql", isolation: "shared", region: "us-east" },
        ],
        proxyReplicas: 2,
        rollbackWindowHours: 24,
        protectTenantDatabases: true,
        redisHostMemoryMb: 4096,
      },
    });
  });

  it("sizes Redis tenant databases (memory: MB or 256mb/2gb) and refuses a shared Redis host they oversubscribe, naming it and them", () => {
    const raw = valid();
    const dbs = (raw.tenants as Record<string, { databases: Record<string, Record<string, unknown>> }>);
    dbs.acme!.databases.cache!.memory = "2gb";
    dbs.globex!.databases.cache = { engine: "redis", isolation: "shared", region: "eu-west", memory: 1536 };
    const r = validateFleetConfig(raw);
    expect(r.ok && r.spec.databases.filter((d) => d.engine === "redis").map((d) => d.memoryMb)).toEqual([2048, 1536]);
    const over = problemsOf({ ...raw, redisHostMemoryMb: 3000 });
    expect(over).toEqual([
      { path: "tenants", message: expect.stringMatching(/^shared Redis host shared-redis-eu-west is oversubscribed: its tenant databases' instances need 3584 MB \(acme\/cache 2048 MB, globex\/cache 1536 MB\) and the host gives them 3000 MB \(redisHostMemoryMb\)/) },
    ]);
    dbs.acme!.databases.cache!.memory = "lots";
    dbs.acme!.databases.app!.memory = 64;
    expect(problemsOf(raw).map((p) => [p.path, p.message])).toEqual([
      ["tenants.acme.databases.app.memory", expect.stringMatching(/memory applies to redis tenant databases/)],
      ["tenants.acme.databases.cache.memory", expect.stringMatching(/memory must be a size such as 256mb or 2gb \(a number is MB\), got "lots"/)],
    ]);
    expect(problemsOf({ ...valid(), redisHostMemoryMb: "big" })[0]).toMatchObject({ path: "redisHostMemoryMb" });
  });

  it("rejects bad fleet settings, naming each", () => {
    const r = validateFleetConfig({ ...valid(), proxyReplicas: 0, rollbackWindowHours: -1, protectTenantDatabases: "yes" });
    expect(r.ok).toBe(false);
    const paths = (r as { problems: { path: string }[] }).problems.map((p) => p.path);
    expect(paths).toEqual(["proxyReplicas", "rollbackWindowHours", "protectTenantDatabases"]);
  });

  it("rejects an unknown engine, naming tenant, database and field", () => {
    const raw = valid();
    (raw.tenants as any).acme.databases.app.engine = "oracle";
    expect(problemsOf(raw)).toEqual([
      {
        path: "tenants.acme.databases.app.engine",
        message: expect.stringMatching(/tenant "acme", database "app": engine must be one of .*"postgres".*got "oracle"/),
      },
    ]);
  });

  it("rejects an unknown isolation", () => {
    const raw = valid();
    (raw.tenants as any).globex.databases.app.isolation = "private";
    expect(problemsOf(raw)).toEqual([
      {
        path: "tenants.globex.databases.app.isolation",
        message: expect.stringContaining('tenant "globex", database "app": isolation must be one of "shared", "dedicated", got "private"'),
      },
    ]);
  });

  it("rejects a region the stack does not declare", () => {
    const raw = valid();
    (raw.tenants as any).acme.databases.cache.region = "ap-south";
    expect(problemsOf(raw)).toEqual([
      {
        path: "tenants.acme.databases.cache.region",
        message: expect.stringContaining('tenant "acme", database "cache": region "ap-south" is not one of the stack\'s regions'),
      },
    ]);
  });

  it("rejects tenant names that are not safe identifiers", () => {
    const raw = valid();
    (raw.tenants as any)["Acme Corp"] = (raw.tenants as any).acme;
    delete (raw.tenants as any).acme;
    const [p] = problemsOf(raw);
    expect(p).toEqual({ path: "tenants.Acme Corp", message: expect.stringContaining('tenant name "Acme Corp" is not a safe identifier') });
  });

  it("rejects database names containing the proxy separator __", () => {
    const raw = valid();
    (raw.tenants as any).globex.databases = { my__app: { engine: "mysql", isolation: "shared", region: "us-east" } };
    expect(problemsOf(raw)).toEqual([
      { path: "tenants.globex.databases.my__app", message: expect.stringContaining('must not contain "__"') },
    ]);
  });

  it("rejects duplicate regions", () => {
    const raw = valid();
    raw.regions = ["eu-west", "us-east", "eu-west"];
    expect(problemsOf(raw)).toEqual([{ path: "regions[2]", message: 'region "eu-west" is listed twice' }]);
  });

  it("rejects tenants that differ only by case as duplicates", () => {
    const raw = valid();
    (raw.tenants as any).ACME = (raw.tenants as any).acme;
    const paths = problemsOf(raw).map((p) => p.message);
    expect(paths).toContain('tenant "ACME" duplicates tenant "acme"');
  });

  it("rejects a database with a missing field, naming the field", () => {
    const raw = valid();
    delete (raw.tenants as any).acme.databases.app.isolation;
    expect(problemsOf(raw)).toEqual([
      { path: "tenants.acme.databases.app.isolation", message: 'tenant "acme", database "app": isolation is missing' },
    ]);
  });

  it("rejects a tenant without databases", () => {
    const raw = valid();
    (raw.tenants as any).initech = {};
    expect(problemsOf(raw)).toEqual([{ path: "tenants.initech.databases", message: 'tenant "initech": databases is missing' }]);
  });

  it("rejects a missing regions list and a missing tenants map", () => {
    expect(problemsOf({}).map((p) => p.path)).toEqual(["regions", "tenants"]);
  });

  it("rejects unknown fields, so a typo cannot silently fall back to a default", () => {
    const raw = valid();
    (raw.tenants as any).acme.databases.app.isolaton = "shared";
    expect(problemsOf(raw)).toEqual([
      { path: "tenants.acme.databases.app.isolaton", message: expect.stringContaining('unknown field "isolaton"') },
    ]);
  });

  it("rejects a platform that is not available", () => {
    const raw = valid();
    raw.platform = "azure";
    expect(problemsOf(raw)).toEqual([{ path: "platform", message: expect.stringContaining('got "azure"') }]);
  });

  it("reports every problem at once, one line each", () => {
    const raw = valid();
    (raw.tenants as any).acme.databases.app.engine = "oracle";
    (raw.tenants as any).globex.databases.app.region = "mars";
    const text = formatProblems(problemsOf(raw));
    expect(text.split("\n")).toEqual([
      "invalid tenantfleet stack config (2 problems):",
      expect.stringMatching(/^  tenantfleet:tenants\.acme\.databases\.app\.engine: /),
      expect.stringMatching(/^  tenantfleet:tenants\.globex\.databases\.app\.region: /),
    ]);
  });
});

describe("validateFleetConfig: tenantfleet:aws / tenantfleet:gcp", () => {
  const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMockKey ops@example";
  const aws = (cloud: unknown): RawFleetConfig => ({ ...valid(), platform: "aws", aws: cloud });

  it("accepts a cloud config, filling in defaults", () => {
    const r = validateFleetConfig(aws({ regions: { "eu-west": "eu-west-1", "us-east": "us-east-1" }, bastion: { allowedCidrs: ["203.0.113.0/24"], publicKey: key } }));
    if (!r.ok) throw new Error(formatProblems(r.problems));
    expect(r.spec.cloud).toMatchObject({
      regions: { "eu-west": "eu-west-1", "us-east": "us-east-1" },
      homeRegion: "eu-west",
      bastion: { allowedCidrs: ["203.0.113.0/24"], publicKey: key, user: "tenantfleet" },
      proxyInternetFacing: false,
      backupRetentionDays: 30,
      diskGb: { shared: 200, dedicated: 100 },
    });
  });

  it("needs the cloud block on a cloud platform, naming what to write", () => {
    expect(problemsOf({ ...valid(), platform: "gcp" })).toEqual([
      { path: "gcp", message: expect.stringMatching(/needs tenantfleet:gcp with at least regions .* and bastion/) },
    ]);
  });

  it("reports every problem: unmapped region, bad region name, open bastion, bad key, unknown field", () => {
    const problems = problemsOf(aws({ regions: { "eu-west": "europe-west1" }, bastion: { allowedCidrs: ["0.0.0.0/0"], publicKey: "not a key" }, colour: "blue" }));
    expect(problems.map((p) => p.path).sort()).toEqual(["aws.bastion.allowedCidrs", "aws.bastion.publicKey", "aws.colour", "aws.regions.eu-west", "aws.regions.us-east"]);
    expect(problems.find((p) => p.path === "aws.bastion.allowedCidrs")!.message).toMatch(/never open to the whole internet/);
    expect(problems.find((p) => p.path === "aws.regions.eu-west")!.message).toMatch(/not a aws region name \(e\.g\. eu-west-1\)/);
  });

  it("refuses settings of the other cloud", () => {
    expect(problemsOf({ ...valid(), gcp: { project: "x" } })).toEqual([{ path: "gcp", message: 'tenantfleet:gcp is set but the platform is "local"' }]);
  });
});

describe("pool settings and the servers' connection budgets", () => {
  const shared = (n: number, pool?: unknown, engine = "postgres"): RawFleetConfig => ({
    regions: ["eu-west"],
    tenants: Object.fromEntries(
      Array.from({ length: n }, (_, i) => [`t${i}`, { databases: { app: { engine, isolation: "shared", region: "eu-west", ...(pool === undefined ? {} : { pool }) } } }]),
    ),
  });

  it("no pool: session mode as before (nothing added to the spec); a pool with defaults fills them in", () => {
    const plain = validateFleetConfig(shared(1));
    expect(plain.ok && plain.spec.databases[0]).toEqual({ tenant: "t0", database: "app", engine: "postgres", isolation: "shared", region: "eu-west" });
    const pooled = validateFleetConfig(shared(1, { mode: "transaction" }));
    expect(pooled.ok && pooled.spec.databases[0]!.pool).toEqual({ mode: "transaction", size: 5 });
    const session = validateFleetConfig(shared(1, {}));
    expect(session.ok && session.spec.databases[0]!.pool).toEqual({ mode: "session", size: 5 });
  });

  it("refuses bad pool values, unknown fields and a pool on an engine the proxy does not pool, naming the field", () => {
    expect(problemsOf(shared(1, { mode: "statement" }))[0]).toEqual({ path: "tenants.t0.databases.app.pool.mode", message: 'tenant "t0", database "app": pool.mode must be one of "session", "transaction", got "statement"' });
    expect(problemsOf(shared(1, { mode: "transaction", size: 0 }))[0]!.path).toBe("tenants.t0.databases.app.pool.size");
    expect(problemsOf(shared(1, { mode: "transaction", size: 2.5 }))[0]!.message).toMatch(/pool.size must be a whole number from 1 to 1000/);
    expect(problemsOf(shared(1, { mode: "transaction", max: 3 }))[0]!.path).toBe("tenants.t0.databases.app.pool.max");
    expect(problemsOf(shared(1, "transaction"))[0]!.message).toMatch(/pool must be a map \{ mode, size \}/);
    const redis = valid();
    (redis.tenants as Record<string, { databases: Record<string, Record<string, unknown>> }>).acme!.databases.cache!.pool = { mode: "transaction" };
    expect(problemsOf(redis)[0]!.message).toMatch(/pool applies to postgres and mysql tenant databases \(the redis proxy does not pool yet\)/);
  });

  it("refuses a server whose transaction pools would not fit its budget, naming the server and every database on it", () => {
    // local shared server: max_connections 100, budget 90; 2 proxies.
    expect(validateFleetConfig(shared(9, { mode: "transaction", size: 5 })).ok).toBe(true); // 9 × 5 × 2 = 90
    const over = problemsOf(shared(10, { mode: "transaction", size: 5 })); // 100 > 90
    expect(over).toHaveLength(1);
    expect(over[0]!.message).toBe(
      "server shared-postgres-eu-west is oversubscribed: the transaction pools of " +
        Array.from({ length: 10 }, (_, i) => `t${i}/app (5)`).join(", ") +
        " need 100 connections with 2 proxies, more than its budget of 90 (max_connections 100 less 10 kept for admin, replication and migrations). Lower the pool sizes, or move a database to a dedicated server.",
    );
    // Session-mode databases keep a connection per client session and are not counted; one proxy halves the need.
    expect(validateFleetConfig(shared(30, { mode: "session", size: 50 })).ok).toBe(true);
    expect(validateFleetConfig({ ...shared(10, { mode: "transaction", size: 5 }), proxyReplicas: 1 }).ok).toBe(true);
  });

  it("MariaDB tenant databases pool too, against their server's own budget (max_connections 200)", () => {
    const pooled = validateFleetConfig(shared(1, { mode: "transaction", size: 4 }, "mysql"));
    expect(pooled.ok && pooled.spec.databases[0]!.pool).toEqual({ mode: "transaction", size: 4 });
    expect(validateFleetConfig(shared(19, { mode: "transaction", size: 5 }, "mysql")).ok).toBe(true); // 19 × 5 × 2 = 190
    const over = problemsOf(shared(20, { mode: "transaction", size: 5 }, "mysql")); // 200 > 190
    expect(over).toHaveLength(1);
    expect(over[0]!.message).toMatch(/^server shared-mysql-eu-west is oversubscribed: .* need 200 connections with 2 proxies, more than its budget of 190 \(max_connections 200 less 10/);
  });
});
