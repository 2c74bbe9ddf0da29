/**
 * SchemaSet: a database name's migration files (and seed) in the control catalog, where a
 * TenantDatabase being created reads them to start at the head.
 */
import type * as pulumi from "@pulumi/pulumi";
import { migrateCatalog } from "../../proxy/catalog/schema";
import { withCatalog } from "../control-catalog/connect";
import { bastionOf, throughBastion } from "../tunnel/ssh-tunnel";
import { deleteSchemaSet, saveSchemaSet } from "./catalog";
import { ref, sameRefs } from "./plan";
import { SCHEMA_ENGINES, type MigrationRef, type SchemaSetInputs } from "./types";

/** What the state keeps of a set: names and checksums (the text is in the catalog and the inputs). */
export interface SchemaSetOutputs extends Omit<SchemaSetInputs, "files" | "seed"> {
  files: MigrationRef[];
  seed?: MigrationRef;
}


async function save(i: SchemaSetInputs): Promise<SchemaSetOutputs> {
  const target = { host: i.catalog.host, port: i.catalog.port };
  await throughBastion(bastionOf(i), [target], (t) =>
    withCatalog({ ...i, catalogVia: t.local(target) }, async (c) => {
      await migrateCatalog(c);
      await saveSchemaSet(c, i);
    }),
  );
  const { files, seed, ...rest } = i;
  return { ...rest, files: files.map(ref), ...(seed ? { seed: ref(seed) } : {}) };
}

export const provider: pulumi.dynamic.ResourceProvider = {
  async check(olds: Partial<SchemaSetInputs>, news: SchemaSetInputs) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    if (!SCHEMA_ENGINES.includes(news.engine)) failures.push({ property: "engine", reason: `database ${news.database}: schema migrations are for ${SCHEMA_ENGINES.join(" and ")} databases, not ${news.engine}` });
    if (!Array.isArray(news.files)) failures.push({ property: "files", reason: "files must be a list" });
    // Edits of applied files are refused by the SchemaRollout's check: it knows what the last
    // rollout applied everywhere; this set may hold a file no tenant database took (its canary
    // failed), which the user may still fix.
    return failures.length ? { failures } : { inputs: news };
  },
  async diff(_id, olds: SchemaSetOutputs, news: SchemaSetInputs) {
    const changes =
      !sameRefs(olds.files, news.files.map(ref)) ||
      olds.seed?.checksum !== news.seed?.checksum ||
      olds.engine !== news.engine ||
      JSON.stringify(olds.catalog) !== JSON.stringify(news.catalog) ||
      olds.catalogPassword !== news.catalogPassword ||
      JSON.stringify(olds.bastion) !== JSON.stringify(news.bastion);
    return { changes, replaces: olds.database !== news.database ? ["database"] : [], deleteBeforeReplace: true };
  },
  async create(i: SchemaSetInputs) {
    return { id: i.database, outs: await save(i) };
  },
  async update(_id, _olds: SchemaSetOutputs, news: SchemaSetInputs) {
    return { outs: await save(news) };
  },
  async delete(_id, o: SchemaSetOutputs) {
    // The tenant databases keep their tables and history; only the catalog forgets the files.
    const target = { host: o.catalog.host, port: o.catalog.port };
    await throughBastion(bastionOf(o), [target], (t) => withCatalog({ ...o, catalogVia: t.local(target) }, (c) => deleteSchemaSet(c, o.database))).catch(() => undefined);
  },
};
