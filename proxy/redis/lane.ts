/**
 * A lane: one server connection that many Redis sessions of one tenant database share, as
 * twemproxy multiplexes its clients. Redis answers a connection's commands in order, so the lane
 * keeps a queue of whose each command was and hands every reply to that session. Commands that
 * arrive in one turn of the event loop go out in one write, and a read of replies serves many
 * sessions: the server and the proxy make a fraction of the system calls a connection per client
 * costs, and an instance serves thousands of clients with a few connections.
 *
 * Only commands that leave no state on the connection ride a lane (session.ts decides: a session
 * that SELECTs another db, opens a MULTI or a WATCH, subscribes, blocks, names itself or turns
 * tracking on gets a connection of its own first). Every lane command has exactly one reply.
 *
 * A lane logs in as the tenant database's user (the route's login) before anything else on the
 * connection, and talks one RESP version (a lane per version). Its commands are written at once,
 * behind the login: the server runs them in order, so nothing waits for the login's reply; a
 * refused login fails every command queued behind it. A lane that breaks fails the sessions with
 * a command in flight on it (an error reply, never a bare reset); the others open a new lane with
 * their next command.
 */
import * as net from "node:net";
import { RespReader, encodeCommand, errorText, lastNeed, valueEnd } from "./resp";

/** What a lane needs of a session. */
export interface LaneRider {
  /** A reply to the rider's oldest command on the lane (the rider may be closed: it drops it). */
  laneReply(b: Buffer, at: number, end: number): void;
  /** After a read that delivered replies to this rider: its client socket is uncorked here. */
  laneReplied(): void;
  /** The lane broke with a command of the rider's in flight. */
  laneBroken(lane: Lane, reason: string): void;
  /** The rider's client socket, corked while a read delivers its replies. */
  readonly clientSocket: net.Socket;
}

export interface LaneTarget {
  host: string;
  port: number;
  user: string;
  password: string;
  resp3: boolean;
}

export class Lane {
  readonly socket: net.Socket;
  private readonly reader = new RespReader();
  /** Whose each command in flight is, oldest first (from `head`). */
  private readonly queue: LaneRider[] = [];
  private head = 0;
  /** The login's replies still to come (AUTH, and HELLO 3 on a RESP3 lane). */
  private login: number;
  private corked = false;
  broken: string | undefined;
  /** When the lane last carried a command (for closing idle lanes). */
  lastUsed = Date.now();

  constructor(
    readonly target: LaneTarget,
    private readonly onClosed: (lane: Lane) => void,
    connectTimeoutMs: number,
  ) {
    this.socket = net.connect({ host: target.host, port: target.port });
    this.socket.setNoDelay(true);
    this.socket.setTimeout(connectTimeoutMs, () => this.socket.destroy(new Error(`${target.host}:${target.port} did not answer within ${connectTimeoutMs} ms`)));
    this.socket.once("connect", () => this.socket.setTimeout(0));
    const login = [encodeCommand(["AUTH", target.user, target.password]), ...(target.resp3 ? [encodeCommand(["HELLO", "3"])] : [])];
    this.login = login.length;
    this.socket.write(Buffer.concat(login));
    this.socket.on("data", (chunk: Buffer) => this.data(chunk));
    this.socket.on("error", (e) => this.break(`server connection error: ${e.message}`));
    this.socket.on("close", () => this.break("the server closed the connection"));
  }

  /** Commands in flight. */
  get inFlight(): number {
    return this.queue.length - this.head;
  }

  /** Sends one command (one reply) for `rider`; commands sent in one turn of the event loop go out in one write. */
  send(rider: LaneRider, bytes: Buffer): void {
    this.queue.push(rider);
    this.lastUsed = Date.now();
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(bytes);
  }

  close(): void {
    this.socket.destroy();
  }

  private data(chunk: Buffer): void {
    if (!this.reader.feed(chunk)) return;
    const buf = this.reader.buffer;
    let i = this.reader.offset;
    const touched = new Set<LaneRider>();
    try {
      while (i < buf.length) {
        const end = valueEnd(buf, i);
        if (end < 0) {
          this.reader.offset = i;
          this.reader.waitFor(lastNeed());
          return;
        }
        if (this.login > 0) {
          this.login--;
          const err = errorText(buf, i, end);
          if (err !== undefined) return void this.socket.destroy(new Error(`the lane's login was refused: ${err}`));
        } else if (buf[i] === 62 /* > */) {
          // A push no lane command asks for (lane sessions have no tracking, no subscription).
        } else {
          const rider = this.queue[this.head];
          if (!rider) return void this.socket.destroy(new Error("a reply to no command on the lane"));
          this.queue[this.head++] = undefined as unknown as LaneRider;
          if (!touched.has(rider)) {
            touched.add(rider);
            rider.clientSocket.cork();
          }
          rider.laneReply(buf, i, end);
        }
        i = end;
      }
      this.reader.offset = i;
      if (this.head === this.queue.length) this.queue.length = this.head = 0;
    } catch (e) {
      this.socket.destroy(e as Error);
    } finally {
      for (const r of touched) {
        r.clientSocket.uncork();
        r.laneReplied();
      }
    }
  }

  private break(reason: string): void {
    if (this.broken) return;
    this.broken = reason;
    this.socket.destroy();
    const riders = new Set(this.queue.slice(this.head));
    this.queue.length = this.head = 0;
    this.onClosed(this);
    for (const r of riders) r.laneBroken(this, reason);
  }
}
