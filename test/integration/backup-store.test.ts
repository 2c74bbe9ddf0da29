/**
 * The backup store (dynamic-providers/backups/store.ts) against real S3 and GCS protocol servers on
 * 127.0.0.1 (gofakes3, fake-gcs-server; built by `npm run setup`), read back with the real client
 * libraries: a 12 MB dump (S3: several multipart parts; GCS: a resumable upload, the paths the
 * clouds take) arrives byte-identical and the local file is gone; remove deletes it from the bucket
 * its location names and is idempotent; a missing bucket fails naming the location and keeps the
 * local file. Then one real PostgreSQL migration whose safety backup goes to the S3
 * server: the object is a pg_dump archive of the tenant's table.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, existsSync, mkdtempSync, promises as fs, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Readable } from "node:stream";
import { promisify } from "node:util";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { Storage } from "@google-cloud/storage";
import { backupStore, storeOf, type BackupBucket } from "../../dynamic-providers/backups/store";
import { pgBinary } from "../../dynamic-providers/engines/postgres/local";
import { startFakeGcs, startFakeS3, type ObjectStoreServer } from "../../scripts/lib/object-stores";
import { LocalPgFleet, type PgServer } from "../../scripts/lib/local-pg-fleet";

const execFileP = promisify(execFile);
const BUCKET = "tf-fleet-backups";
const MB = 1024 * 1024;
/** Fake credentials for the emulators, in this process only (the SDKs' default chain reads them). */
const FAKE_AWS_ENV = { AWS_ACCESS_KEY_ID: "tenantfleet-test", AWS_SECRET_ACCESS_KEY: "tenantfleet-test-secret", AWS_EC2_METADATA_DISABLED: "true" };

let dir: string;
let s3: ObjectStoreServer;
let gcs: ObjectStoreServer;
const savedEnv: Record<string, string | undefined> = {};

beforeAll(async () => {
  for (const [k, v] of Object.entries(FAKE_AWS_ENV)) {
    savedEnv[k] = process.env[k];
    process.env[k] = v;
  }
  dir = mkdtempSync(path.join(os.tmpdir(), "tf-backup-store-"));
  [s3, gcs] = await Promise.all([startFakeS3(BUCKET), startFakeGcs(BUCKET)]);
});

afterAll(async () => {
  await Promise.all([s3?.stop(), gcs?.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

const s3Bucket = (bucket = BUCKET): BackupBucket => ({ provider: "s3", bucket, region: "us-east-1", endpoint: s3.endpoint });
const gcsBucket = (bucket = BUCKET): BackupBucket => ({ provider: "gcs", bucket, endpoint: gcs.endpoint, projectId: "test" });

let n = 0;
/** A file of random bytes, named like a dump, with its sha256. */
async function randomDump(bytes: number): Promise<{ file: string; sha256: string; key: string }> {
  const data = randomBytes(bytes);
  const name = `2026-11-22T10-00-00-${String(++n).padStart(3, "0")}Z-shared-a.dump`;
  const file = path.join(dir, name);
  await fs.writeFile(file, data);
  return { file, sha256: createHash("sha256").update(data).digest("hex"), key: `acme/app/${name}` };
}

async function sha256Of(stream: Readable): Promise<{ sha256: string; bytes: number }> {
  const h = createHash("sha256");
  let bytes = 0;
  for await (const chunk of stream) {
    h.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: h.digest("hex"), bytes };
}

function s3Client(): S3Client {
  return new S3Client({ region: "us-east-1", endpoint: s3.endpoint, forcePathStyle: true });
}

/** The object's bytes, read with GetObject. */
async function s3Get(bucket: string, key: string): Promise<Buffer> {
  const c = s3Client();
  try {
    const r = await c.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await r.Body!.transformToByteArray());
  } finally {
    c.destroy();
  }
}

const sha256 = (b: Buffer) => ({ sha256: createHash("sha256").update(b).digest("hex"), bytes: b.length });

function gcsFile(bucket: string, key: string) {
  return new Storage({ apiEndpoint: gcs.endpoint, projectId: "test" }).bucket(bucket).file(key);
}

/** `s3://b/k` / `gs://b/k` → { bucket, key }. */
function split(location: string): { bucket: string; key: string } {
  const m = /^(?:s3|gs):\/\/([^/]+)\/(.+)$/.exec(location);
  if (!m) throw new Error(`not a bucket location: ${location}`);
  return { bucket: m[1]!, key: m[2]! };
}

describe("S3 (gofakes3)", () => {
  it("put uploads a 12 MB dump in several multipart parts, byte-identical, and removes the local file", async () => {
    const d = await randomDump(12 * MB);
    const location = await backupStore(s3Bucket()).put(d.file, d.key);
    expect(location).toBe(`s3://${BUCKET}/backups/${d.key}`);
    expect(existsSync(d.file)).toBe(false);
    // The server saw a multipart upload of this object: more than one part, completed once.
    const log = s3.output();
    const parts = log.split("\n").filter((l) => l.includes("put multipart upload") && l.includes(`backups/${d.key}`));
    expect(parts.length).toBeGreaterThanOrEqual(3); // 12 MB in lib-storage's 5 MB parts
    expect(log).toMatch(new RegExp(`complete multipart upload ${BUCKET} backups/${d.key.replace(/[.]/g, "\\.")}`));
    expect(sha256(await s3Get(BUCKET, `backups/${d.key}`))).toEqual({ sha256: d.sha256, bytes: 12 * MB });
  });

  it("remove deletes the object (GetObject → NoSuchKey); removing it again is not an error", async () => {
    const d = await randomDump(64 * 1024);
    const store = backupStore(s3Bucket());
    const location = await store.put(d.file, d.key);
    expect(sha256(await s3Get(BUCKET, split(location).key)).sha256).toBe(d.sha256);
    await store.remove(location);
    await expect(s3Get(BUCKET, split(location).key)).rejects.toMatchObject({ name: "NoSuchKey" });
    await expect(store.remove(location)).resolves.toBeUndefined();
  });

  it("a retained backup is removed from the bucket its location names, even after the configured bucket changed", async () => {
    const d = await randomDump(64 * 1024);
    const location = await backupStore(s3Bucket()).put(d.file, d.key);
    // As the TenantDatabase provider expires a retained backup: storeOf(location, the bucket configured now).
    await storeOf(location, s3Bucket("renamed-bucket")).remove(location);
    await expect(s3Get(BUCKET, split(location).key)).rejects.toMatchObject({ name: "NoSuchKey" });
  });

  it("a missing bucket fails the put with the s3:// location and keeps the local file", async () => {
    const d = await randomDump(6 * MB);
    const err = (await backupStore(s3Bucket("no-such-bucket")).put(d.file, d.key).catch((e: Error) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toContain(`could not upload the safety backup to s3://no-such-bucket/backups/${d.key}`);
    expect(err.message).toContain(`it is kept at ${d.file}`);
    expect(err.message).toMatch(/: The specified bucket does not exist$/); // the server's reason, after the location
    expect((await sha256Of(createReadStream(d.file))).sha256).toBe(d.sha256);
  });
});

describe("GCS (fake-gcs-server)", () => {
  it("put uploads a 12 MB dump (resumable upload, as against GCS), byte-identical, and removes the local file", async () => {
    const d = await randomDump(12 * MB);
    const location = await backupStore(gcsBucket()).put(d.file, d.key);
    expect(location).toBe(`gs://${BUCKET}/backups/${d.key}`);
    expect(existsSync(d.file)).toBe(false);
    expect(gcs.output()).toContain(`/upload/storage/v1/b/${BUCKET}/o?name=${encodeURIComponent(`backups/${d.key}`)}&uploadType=resumable`);
    expect(await sha256Of(gcsFile(BUCKET, `backups/${d.key}`).createReadStream())).toEqual({ sha256: d.sha256, bytes: 12 * MB });
  });

  it("remove deletes the object; removing it again is not an error", async () => {
    const d = await randomDump(64 * 1024);
    const store = backupStore(gcsBucket());
    const location = await store.put(d.file, d.key);
    const file = gcsFile(BUCKET, split(location).key);
    expect((await file.exists())[0]).toBe(true);
    await store.remove(location);
    expect((await file.exists())[0]).toBe(false);
    await expect(sha256Of(file.createReadStream())).rejects.toMatchObject({ code: 404 });
    await expect(store.remove(location)).resolves.toBeUndefined();
  });

  it("a retained backup is removed from the bucket its location names, even after the configured bucket changed", async () => {
    const d = await randomDump(64 * 1024);
    const location = await backupStore(gcsBucket()).put(d.file, d.key);
    await storeOf(location, gcsBucket("renamed-bucket")).remove(location);
    expect((await gcsFile(BUCKET, split(location).key).exists())[0]).toBe(false);
  });

  it("a missing bucket fails the put with the gs:// location and keeps the local file", async () => {
    const d = await randomDump(1 * MB);
    const err = (await backupStore(gcsBucket("no-such-bucket")).put(d.file, d.key).catch((e: Error) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toContain(`could not upload the safety backup to gs://no-such-bucket/backups/${d.key}`);
    expect(err.message).toContain(`it is kept at ${d.file}`);
    expect(err.message).toMatch(/: Not Found$/);
    expect((await sha256Of(createReadStream(d.file))).sha256).toBe(d.sha256);
  });
});

describe("storeOf", () => {
  it("a local path is removed from disk, with or without a bucket configured", async () => {
    for (const bucket of [undefined, s3Bucket()]) {
      const d = await randomDump(1024);
      await storeOf(d.file, bucket).remove(d.file);
      expect(existsSync(d.file)).toBe(false);
    }
  });

  it("a bucket location without a bucket configured fails with a message naming it", () => {
    expect(() => storeOf(`s3://${BUCKET}/backups/acme/app/x.dump`, undefined)).toThrow(
      `the backup s3://${BUCKET}/backups/acme/app/x.dump is in a bucket, but this resource has no backup bucket configured`,
    );
    expect(() => storeOf(`gs://${BUCKET}/backups/acme/app/x.dump`, undefined)).toThrow(/gs:\/\/.*no backup bucket configured/);
  });
});

describe("a PostgreSQL migration whose safety backup goes to S3", () => {
  let fleet: LocalPgFleet;
  let a: PgServer;
  let b: PgServer;

  beforeAll(async () => {
    fleet = await LocalPgFleet.create({ stack: "backup-store" });
    [a, b] = [await fleet.server("shared-a"), await fleet.server("dedicated-b")];
  });

  afterAll(async () => {
    await fleet?.close();
  });

  it("records an s3:// location, leaves no local dump, and the object is a pg_dump archive of the tenant's table", async () => {
    const key = { tenant: "acme", database: "app" };
    const t = await fleet.tenantDatabase(a, { ...key, role: "app__acme" });
    await fleet.withAdmin(a, t.name, async (c) => {
      await c.query(`set role ${t.role}`);
      await c.query("create table invoices (id bigserial primary key, customer text not null, cents bigint not null)");
      await c.query("insert into invoices (customer, cents) select 'customer ' || g, g * 100 from generate_series(1, 5000) g");
    });
    const logs: string[] = [];
    // No way back (as off a dedicated server): the move takes a dump instead of keeping the old copy current.
    const record = await fleet.migrate(key, a, b, (m) => logs.push(m), { backups: backupStore(s3Bucket()), wayBack: false });
    expect(record.status).toBe("done");
    const location = record.backup!.location;
    expect(location).toMatch(new RegExp(`^s3://${BUCKET}/backups/acme/app/[^/]+-shared-a\\.dump$`));
    expect(logs.join("\n")).toContain(`safety backup: ${location}`);
    // The dump was written under the fleet's backup dir and moved out of it: nothing is left there.
    const localDump = path.join(fleet.root, "backups", split(location).key.replace(/^backups\//, ""));
    expect(existsSync(localDump)).toBe(false);
    const leftovers = existsSync(path.join(fleet.root, "backups")) ? await fs.readdir(path.join(fleet.root, "backups"), { recursive: true }) : [];
    expect(leftovers.filter((f) => String(f).endsWith(".dump"))).toEqual([]);

    const downloaded = path.join(dir, "downloaded.dump");
    await fs.writeFile(downloaded, await s3Get(BUCKET, split(location).key));
    expect((await fs.stat(downloaded)).size).toBe(record.backup!.bytes);
    const { stdout } = await execFileP(await pgBinary("pg_restore"), ["--list", downloaded]);
    expect(stdout).toMatch(/TABLE public invoices app__acme/);
    expect(stdout).toMatch(/TABLE DATA public invoices app__acme/);
    console.log(JSON.stringify({ location, bytes: record.backup!.bytes, backupMs: record.timings.backup, totalMs: record.timings.total }));
  });
});
