/**
 * LocalServer: a real database server process standing in for a VM on the local platform.
 * Loaded by `lazyProvider` in the dynamic-provider process; every method is short and reads like
 * the lifecycle: check → (diff) → create | update (repair) → read → delete.
 */
import type * as pulumi from "@pulumi/pulumi";
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { ADMIN_USER, ENGINES, isEngine, type Engine } from "../engines";
import { localRuntime, type LocalServerLayout } from "../engines/local-runtime";
import { planLocalServer } from "./plan";
import { BASE_PORTS, claimPort, releasePort, reservePort } from "./ports";
import { chownTree, isRoot, portOpen, userCanWrite, userExists } from "./process";
import { serverDir, stateRoot, writeServerRecord } from "./state";
import type { LocalServerInputs, LocalServerOutputs, ServerState } from "./types";

const NAME = /^[a-z][a-z0-9_-]{0,119}$/;

export async function serviceUser(engine: Engine): Promise<string | undefined> {
  if (!isRoot()) return undefined;
  const user = (await localRuntime(engine)).serviceUser;
  if (!(await userExists(user))) {
    throw new Error(`running as root, ${engine} needs the unprivileged account "${user}" (created by its Debian package); it does not exist`);
  }
  return user;
}

export function layoutOf(root: string, o: Pick<LocalServerOutputs, "engine" | "stack" | "dirName" | "port" | "serverId" | "maxmemoryMb">, user: string | undefined): LocalServerLayout {
  const dir = serverDir(root, o.stack, o.dirName);
  return {
    engine: o.engine,
    dir,
    dataDir: path.join(dir, "data"),
    logDir: path.join(dir, "log"),
    runDir: path.join(dir, "run"),
    logFile: path.join(dir, "log", `${o.engine}.log`),
    port: o.port,
    serverId: o.serverId,
    user,
    ...(o.maxmemoryMb ? { maxmemoryMb: o.maxmemoryMb } : {}),
  };
}

/** The layout of a recorded server under the current state root, with the account it runs as. */
export async function resolveLayout(o: Pick<LocalServerOutputs, "engine" | "stack" | "dirName" | "port" | "serverId" | "maxmemoryMb">): Promise<LocalServerLayout> {
  return layoutOf(stateRoot(), o, await serviceUser(o.engine));
}

/** What is actually there: running (process up, port open), stopped, or missing (no data dir). */
export async function liveState(o: LocalServerOutputs): Promise<ServerState> {
  // Paths and pid files only: which account the server runs as does not matter here.
  const l = layoutOf(stateRoot(), o, undefined);
  try {
    await fs.access(l.dataDir);
  } catch {
    return "missing";
  }
  const rt = await localRuntime(o.engine);
  return (await rt.runningPid(l)) !== undefined && (await portOpen(o.port)) ? "running" : "stopped";
}

async function ensureRunning(o: LocalServerOutputs): Promise<void> {
  const rt = await localRuntime(o.engine);
  const l = await resolveLayout(o);
  const state = await liveState(o);
  if (state === "running") return;
  await claimPort(o.port, l.dir);
  if (state === "missing") {
    await fs.mkdir(l.logDir, { recursive: true });
    await fs.mkdir(l.runDir, { recursive: true });
    await chownTree(l.dir, l.user);
    await rt.init(l, { user: o.adminUser, password: o.adminPassword });
  } else {
    await rt.start(l);
  }
}

export const provider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: unknown, news: Record<string, unknown>): Promise<pulumi.dynamic.CheckResult> {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    const { engine, serverName, stack, region, role } = news;
    if (!isEngine(engine)) {
      failures.push({ property: "engine", reason: `engine must be one of ${ENGINES.join(", ")}, got ${JSON.stringify(engine)}` });
    } else {
      try {
        await (await localRuntime(engine)).requireBinaries();
      } catch (err) {
        failures.push({ property: "engine", reason: (err as Error).message });
      }
    }
    if (typeof serverName !== "string" || !NAME.test(serverName)) {
      failures.push({ property: "serverName", reason: `serverName must match ${NAME}, got ${JSON.stringify(serverName)}` });
    }
    if (typeof stack !== "string" || !/^[A-Za-z0-9._-]+$/.test(stack)) {
      failures.push({ property: "stack", reason: `stack must be a Pulumi stack name, got ${JSON.stringify(stack)}` });
    }
    if (typeof region !== "string" || region === "") failures.push({ property: "region", reason: "region is required" });
    if (role !== "shared" && role !== "dedicated" && role !== "catalog") failures.push({ property: "role", reason: `role must be "shared", "dedicated" or "catalog", got ${JSON.stringify(role)}` });
    return failures.length > 0 ? { failures } : { inputs: news };
  },

  async diff(_id, olds: LocalServerOutputs, news: LocalServerInputs): Promise<pulumi.dynamic.DiffResult> {
    const plan = planLocalServer(olds, news, await liveState(olds));
    return { changes: plan.changes, replaces: plan.replaces, deleteBeforeReplace: plan.deleteBeforeReplace };
  },

  async create(inputs: LocalServerInputs): Promise<pulumi.dynamic.CreateResult> {
    const root = stateRoot();
    const rt = await localRuntime(inputs.engine);
    await rt.requireBinaries();
    const user = await serviceUser(inputs.engine);
    const dirName = `${inputs.serverName}-${randomBytes(3).toString("hex")}`;
    const dir = serverDir(root, inputs.stack, dirName);
    await fs.mkdir(path.join(dir, "log"), { recursive: true });
    await fs.mkdir(path.join(dir, "run"), { recursive: true });
    let port: number | undefined;
    try {
      await chownTree(dir, user);
      if (!(await userCanWrite(user, dir))) {
        throw new Error(
          `the "${user}" account cannot write ${dir}. ${inputs.engine} does not run as root, so its data dir must be ` +
            `reachable by "${user}": make the parent folders traversable (chmod o+x) or set TENANTFLEET_STATE_DIR ` +
            `to a folder it can reach (e.g. /var/lib/tenantfleet).`,
        );
      }
      port = await reservePort(BASE_PORTS[inputs.engine], dir);
      const outs: LocalServerOutputs = {
        ...inputs,
        dirName,
        dir,
        host: "127.0.0.1",
        port,
        serverId: port,
        adminUser: ADMIN_USER,
        adminPassword: randomBytes(24).toString("base64url"),
        version: await rt.version(),
        state: "running",
      };
      await rt.init(layoutOf(root, outs, user), { user: outs.adminUser, password: outs.adminPassword });
      await writeServerRecord(dir, outs);
      return { id: `${inputs.stack}/${dirName}`, outs };
    } catch (err) {
      // Nothing half-made survives a failed create: stop whatever started, remove the folder.
      const l = layoutOf(root, { engine: inputs.engine, stack: inputs.stack, dirName, port: port ?? 0, serverId: port ?? 0 }, user);
      await rt.stop(l).catch(() => undefined);
      await fs.rm(dir, { recursive: true, force: true });
      if (port !== undefined) await releasePort(port, dir);
      throw new Error(`creating ${inputs.engine} server ${inputs.serverName} failed: ${(err as Error).message}`);
    }
  },

  async read(id: string, props: LocalServerOutputs): Promise<pulumi.dynamic.ReadResult> {
    const dir = serverDir(stateRoot(), props.stack, props.dirName);
    return { id, props: { ...props, dir, state: await liveState(props) } };
  },

  async update(_id, olds: LocalServerOutputs, news: LocalServerInputs): Promise<pulumi.dynamic.UpdateResult> {
    const outs: LocalServerOutputs = { ...olds, ...news, dir: serverDir(stateRoot(), olds.stack, olds.dirName) };
    if (!news.maxmemoryMb) delete outs.maxmemoryMb;
    await ensureRunning(outs);
    const rt = await localRuntime(outs.engine);
    if ((olds.maxmemoryMb ?? 0) !== (news.maxmemoryMb ?? 0) && rt.applySettings) {
      await rt.applySettings(await resolveLayout(outs), { user: outs.adminUser, password: outs.adminPassword });
    }
    await writeServerRecord(outs.dir, outs);
    return { outs: { ...outs, state: "running" } };
  },

  async delete(_id, props: LocalServerOutputs): Promise<void> {
    const root = stateRoot();
    const l = layoutOf(root, props, await serviceUser(props.engine).catch(() => undefined));
    await (await localRuntime(props.engine)).stop(l);
    await fs.rm(l.dir, { recursive: true, force: true });
    await releasePort(props.port, l.dir);
  },
};
