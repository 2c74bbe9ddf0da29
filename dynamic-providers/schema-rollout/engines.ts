/** Each schema engine's applier (the wire and SQL details live in engines/<engine>/schema.ts). */
import { pgSchema } from "../engines/postgres/schema";
import { mysqlSchema } from "../engines/mysql/schema";
import type { SchemaApplier, SchemaEngine } from "./types";

const APPLIERS: Record<SchemaEngine, SchemaApplier> = { postgres: pgSchema, mysql: mysqlSchema };

export function schemaApplier(engine: string): SchemaApplier {
  const a = APPLIERS[engine as SchemaEngine];
  if (!a) throw new Error(`engine ${JSON.stringify(engine)} has no schema migrations (postgres and mysql have)`);
  return a;
}
