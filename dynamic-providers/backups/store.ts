/**
 * Where safety backups live: a folder on the local platform, the fleet's bucket (S3 or GCS) on the
 * cloud ones. A backup is always first written to a local file by the engine's dump tool; `put`
 * then moves it into the store and returns its location, the string the migration record, the
 * retained copies and `npm run status` show (`s3://bucket/key`, `gs://bucket/key`, or a path).
 *
 * The buckets are versioned with a lifecycle rule (components/platforms/*): `remove` deletes the
 * current object; older versions expire by the bucket's rule. Cloud credentials are the operator's
 * own (the SDKs' default chains), like the Pulumi providers'.
 */
import { createReadStream, promises as fs } from "node:fs";

export type BackupBucket =
  | { provider: "s3"; bucket: string; region: string; /** S3-compatible endpoint (tests, MinIO). */ endpoint?: string }
  | { provider: "gcs"; bucket: string; /** Emulator endpoint (tests). */ endpoint?: string; projectId?: string };

export interface BackupStore {
  /** Move the local `file` into the store under `key` (`<tenant>/<database>/<name>.dump`). */
  put(file: string, key: string): Promise<string>;
  /** Remove a backup by the location `put` returned. A backup already gone is not an error. */
  remove(location: string): Promise<void>;
}

export const BACKUP_PREFIX = "backups/";

const localStore: BackupStore = {
  async put(file) {
    return file;
  },
  async remove(location) {
    await fs.rm(location, { force: true });
  },
};

function parse(location: string, scheme: "s3" | "gs"): { bucket: string; key: string } {
  const m = new RegExp(`^${scheme}://([^/]+)/(.+)$`).exec(location);
  if (!m) throw new Error(`not a ${scheme}:// backup location: ${location}`);
  return { bucket: m[1]!, key: m[2]! };
}

function s3Store(b: Extract<BackupBucket, { provider: "s3" }>): BackupStore {
  const client = async () => {
    const { S3Client } = await import("@aws-sdk/client-s3");
    return new S3Client({ region: b.region, ...(b.endpoint ? { endpoint: b.endpoint, forcePathStyle: true } : {}) });
  };
  return {
    async put(file, key) {
      const { Upload } = await import("@aws-sdk/lib-storage");
      const s3 = await client();
      const objectKey = `${BACKUP_PREFIX}${key}`;
      try {
        // Multipart and streamed: a dump of any size, never whole in memory.
        await new Upload({ client: s3, params: { Bucket: b.bucket, Key: objectKey, Body: createReadStream(file), ContentType: "application/octet-stream", ...(b.endpoint ? {} : { ServerSideEncryption: "aws:kms" }) } }).done();
      } catch (e) {
        throw new Error(`could not upload the safety backup to s3://${b.bucket}/${objectKey} (it is kept at ${file}): ${(e as Error).message}`);
      } finally {
        s3.destroy();
      }
      await fs.rm(file, { force: true });
      return `s3://${b.bucket}/${objectKey}`;
    },
    async remove(location) {
      const { DeleteObjectCommand } = await import("@aws-sdk/client-s3");
      const s3 = await client();
      try {
        const { bucket, key } = parse(location, "s3");
        await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
      } finally {
        s3.destroy();
      }
    },
  };
}

function gcsStore(b: Extract<BackupBucket, { provider: "gcs" }>): BackupStore {
  const bucket = async (name = b.bucket) => {
    const { Storage } = await import("@google-cloud/storage");
    return new Storage({ ...(b.endpoint ? { apiEndpoint: b.endpoint, projectId: b.projectId ?? "test" } : b.projectId ? { projectId: b.projectId } : {}) }).bucket(name);
  };
  return {
    async put(file, key) {
      const objectKey = `${BACKUP_PREFIX}${key}`;
      try {
        // Resumable upload for big dumps (fake-gcs-server speaks it too, so tests take this path).
        await (await bucket()).upload(file, { destination: objectKey, resumable: true, contentType: "application/octet-stream" });
      } catch (e) {
        throw new Error(`could not upload the safety backup to gs://${b.bucket}/${objectKey} (it is kept at ${file}): ${(e as Error).message}`);
      }
      await fs.rm(file, { force: true });
      return `gs://${b.bucket}/${objectKey}`;
    },
    async remove(location) {
      // The location's own bucket, as for S3: a retained backup outlives a change of the configured bucket.
      const { bucket: name, key } = parse(location, "gs");
      await (await bucket(name)).file(key).delete({ ignoreNotFound: true });
    },
  };
}

export function backupStore(bucket: BackupBucket | undefined): BackupStore {
  if (!bucket) return localStore;
  return bucket.provider === "s3" ? s3Store(bucket) : gcsStore(bucket);
}

/** The store a location belongs to, for removing it later (a retained backup keeps its location). */
export function storeOf(location: string, bucket: BackupBucket | undefined): BackupStore {
  if (location.startsWith("s3://") || location.startsWith("gs://")) {
    if (!bucket) throw new Error(`the backup ${location} is in a bucket, but this resource has no backup bucket configured`);
    return backupStore(bucket);
  }
  return localStore;
}
