/**
 * A MySQL server connection of a `transaction`-mode pool (proxy/pool.ts): lent to one client
 * session at a time, between transactions. What it carries from one borrower to the next is
 * recorded here so that a session can tell whether the connection fits it as it is:
 *
 * - `settings`: the SET statements applied on it, as the signature the session compares with
 *   its own (sessions.ts: a connection with other settings is reset, then given the session's);
 * - `statements`: the statements prepared on it, by their COM_STMT_PREPARE body, with the
 *   server's id: a session's statement is prepared on a connection once, and used by every
 *   session that prepares the same text (the client keeps the ids the proxy gave it);
 * - `lastInsertId`: what LAST_INSERT_ID() returns on it.
 *
 * A pool keeps connections of one client profile (capabilities and character set as the client
 * negotiated them): the server's responses are then in exactly the form each borrower expects.
 */
import { COM, STATUS } from "./codes";
import { connectMysqlBackend, type MysqlBackend, type MysqlLoginProof, type MysqlTarget } from "./backend";
import { encodePacket } from "./packets";
import { socketGone, type Pool, type PoolConnection, type PoolConnector } from "../pool";

/** A pool drops a connection that holds more prepared statements than this (the server's limit is global). */
export const MAX_STATEMENTS_PER_CONNECTION = 1000;

export class PooledMysql implements PoolConnection {
  settings = "";
  readonly statements = new Map<string, { id: number; params: number }>();
  lastInsertId = 0;
  /** Status flags after its last response (IN_TRANS: not at rest). */
  status: number;
  private closed = false;

  constructor(readonly backend: MysqlBackend) {
    this.status = backend.status;
    // A pooled connection's errors end in its close; whoever holds it then learns of it.
    backend.socket.on("error", () => undefined);
    backend.socket.once("close", () => (this.closed = true));
  }

  get isClosed(): boolean {
    return this.closed || this.backend.socket.destroyed;
  }

  close(): void {
    if (this.isClosed) return;
    this.closed = true;
    this.backend.socket.end(encodePacket(0, Buffer.from([COM.QUIT])).bytes);
  }

  gone(): Promise<void> {
    return socketGone(this.backend.socket);
  }
}

/** What a pool's first connection tells every client that logs in through it. */
export interface MysqlPoolInfo {
  status: number;
  capabilities: number;
}

export type MysqlPool = Pool<PooledMysql, MysqlPoolInfo>;

/** The client profile a pool serves: the capabilities and character set of its clients. */
export interface MysqlClientProfile {
  capabilities: number;
  charset: number;
}

export const profileKey = (p: MysqlClientProfile) => `${p.capabilities >>> 0}/${p.charset}`;

/** How a MysqlPool logs in: as the tenant database's user, with the SHA1 of the password a client proved. */
export function mysqlPoolConnector(target: MysqlTarget, profile: MysqlClientProfile): PoolConnector<PooledMysql, MysqlPoolInfo> {
  return {
    open: async (passwordSha1, connectTimeoutMs) => {
      const login: MysqlLoginProof = { passwordSha1, clientCapabilities: profile.capabilities, charset: profile.charset, attributes: { _proxy: "tenantfleet", _pool: "transaction" }, connectTimeoutMs };
      return new PooledMysql(await connectMysqlBackend(target, login));
    },
    loginInfo: (c) => ({ status: c.backend.status, capabilities: c.backend.capabilities }),
    atRest: (c) => (c.status & (STATUS.IN_TRANS | STATUS.CURSOR_EXISTS)) === 0 && c.statements.size <= MAX_STATEMENTS_PER_CONNECTION,
  };
}
