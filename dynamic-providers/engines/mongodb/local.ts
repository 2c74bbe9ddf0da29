/**
 * MongoDB as a local server needs a `mongod` binary, which none of this machine's package
 * registries provides (Debian dropped MongoDB; the npm packages that ship one download it at run
 * time). Until one is on PATH, LocalServer's check rejects engine "mongodb" with this message.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { LocalEngineRuntime } from "../local-runtime";

const execFileP = promisify(execFile);

export async function findMongod(): Promise<string | undefined> {
  try {
    const { stdout } = await execFileP("sh", ["-c", "command -v mongod"]);
    return stdout.trim() || undefined;
  } catch {
    return undefined;
  }
}

export const MONGOD_MISSING =
  'engine "mongodb" needs a mongod binary on PATH, and none was found. Debian does not package MongoDB; ' +
  "install MongoDB Community Server from its vendor and put mongod on PATH, or choose another engine.";

const notYet = async (): Promise<never> => {
  throw new Error(
    (await findMongod()) ? 'engine "mongodb": local mongod servers are not supported yet (mongod was found; support is planned)' : MONGOD_MISSING,
  );
};

export const mongodbLocal: LocalEngineRuntime = {
  serviceUser: "mongodb",
  async requireBinaries() {
    if (!(await findMongod())) throw new Error(MONGOD_MISSING);
  },
  version: notYet,
  init: notYet,
  start: notYet,
  stop: async () => undefined,
  runningPid: async () => undefined,
};
