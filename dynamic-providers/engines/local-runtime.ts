/**
 * How each engine runs as a local server process — the local platform's stand-in for a VM.
 * One implementation per engine folder; LocalServer picks by engine.
 */
import type { Engine } from "./index";

export interface LocalServerLayout {
  engine: Engine;
  /** The server's own folder; everything it writes lives below it. */
  dir: string;
  dataDir: string;
  logDir: string;
  runDir: string;
  logFile: string;
  port: number;
  /** Unique per server on this machine (MariaDB server_id). */
  serverId: number;
  /** OS user the server runs as when we are root; undefined runs it as ourselves. */
  user?: string;
  /** Redis: the instance's maxmemory, MB. */
  maxmemoryMb?: number;
}

export interface LocalEngineRuntime {
  /** Debian's account for this engine, used when running as root. */
  serviceUser: string;
  /** Resolves when the engine's binaries are installed; rejects with what to install otherwise. */
  requireBinaries(): Promise<void>;
  /** Server version, e.g. "15.18". */
  version(): Promise<string>;
  /** Create the data dir and config, start the server and create the admin account. */
  init(layout: LocalServerLayout, admin: { user: string; password: string }): Promise<void>;
  /** Start an initialised server (config rewritten from the current settings first). */
  start(layout: LocalServerLayout): Promise<void>;
  /** Stop it gracefully; resolves at once when it is not running. */
  stop(layout: LocalServerLayout): Promise<void>;
  /** The server's pid when it is running. */
  runningPid(layout: LocalServerLayout): Promise<number | undefined>;
  /** Apply settings that changed to the running server (its config file rewritten too), when the engine can without a restart. */
  applySettings?(layout: LocalServerLayout, admin: { user: string; password: string }): Promise<void>;
}

export async function localRuntime(engine: Engine): Promise<LocalEngineRuntime> {
  switch (engine) {
    case "postgres":
      return (await import("./postgres/local")).postgresLocal;
    case "mysql":
      return (await import("./mysql/local")).mysqlLocal;
    case "redis":
      return (await import("./redis/local")).redisLocal;
    case "mongodb":
      return (await import("./mongodb/local")).mongodbLocal;
  }
}
