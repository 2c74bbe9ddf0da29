/**
 * MySQL client/server protocol constants (MariaDB's "Connecting" and "Result packets" pages, and
 * MySQL's include/mysql_com.h). Error codes are the server's own (`ER_*`).
 */

/** Capability flags (the lower 32 bits; MariaDB's extended ones are not offered). */
export const CAP = {
  LONG_PASSWORD: 1 << 0, // also "CLIENT_MYSQL": a MySQL-compatible peer
  FOUND_ROWS: 1 << 1,
  LONG_FLAG: 1 << 2,
  CONNECT_WITH_DB: 1 << 3,
  NO_SCHEMA: 1 << 4,
  COMPRESS: 1 << 5,
  ODBC: 1 << 6,
  LOCAL_FILES: 1 << 7,
  IGNORE_SPACE: 1 << 8,
  PROTOCOL_41: 1 << 9,
  INTERACTIVE: 1 << 10,
  SSL: 1 << 11,
  IGNORE_SIGPIPE: 1 << 12,
  TRANSACTIONS: 1 << 13,
  RESERVED: 1 << 14,
  SECURE_CONNECTION: 1 << 15,
  MULTI_STATEMENTS: 1 << 16,
  MULTI_RESULTS: 1 << 17,
  PS_MULTI_RESULTS: 1 << 18,
  PLUGIN_AUTH: 1 << 19,
  CONNECT_ATTRS: 1 << 20,
  PLUGIN_AUTH_LENENC_CLIENT_DATA: 1 << 21,
  CAN_HANDLE_EXPIRED_PASSWORDS: 1 << 22,
  SESSION_TRACK: 1 << 23,
  DEPRECATE_EOF: 1 << 24,
} as const;

/** Server status flags (OK and EOF packets). */
export const STATUS = {
  IN_TRANS: 0x0001,
  AUTOCOMMIT: 0x0002,
  MORE_RESULTS_EXISTS: 0x0008,
  NO_GOOD_INDEX_USED: 0x0010,
  NO_INDEX_USED: 0x0020,
  CURSOR_EXISTS: 0x0040,
  LAST_ROW_SENT: 0x0080,
  DB_DROPPED: 0x0100,
  NO_BACKSLASH_ESCAPES: 0x0200,
  METADATA_CHANGED: 0x0400,
  QUERY_WAS_SLOW: 0x0800,
  PS_OUT_PARAMS: 0x1000,
  IN_TRANS_READONLY: 0x2000,
  SESSION_STATE_CHANGED: 0x4000,
} as const;

/** Command bytes (the first byte of each client packet after the handshake). */
export const COM = {
  SLEEP: 0x00,
  QUIT: 0x01,
  INIT_DB: 0x02,
  QUERY: 0x03,
  FIELD_LIST: 0x04,
  CREATE_DB: 0x05,
  DROP_DB: 0x06,
  REFRESH: 0x07,
  SHUTDOWN: 0x08,
  STATISTICS: 0x09,
  PROCESS_INFO: 0x0a,
  CONNECT: 0x0b,
  PROCESS_KILL: 0x0c,
  DEBUG: 0x0d,
  PING: 0x0e,
  TIME: 0x0f,
  DELAYED_INSERT: 0x10,
  CHANGE_USER: 0x11,
  BINLOG_DUMP: 0x12,
  TABLE_DUMP: 0x13,
  CONNECT_OUT: 0x14,
  REGISTER_SLAVE: 0x15,
  STMT_PREPARE: 0x16,
  STMT_EXECUTE: 0x17,
  STMT_SEND_LONG_DATA: 0x18,
  STMT_CLOSE: 0x19,
  STMT_RESET: 0x1a,
  SET_OPTION: 0x1b,
  STMT_FETCH: 0x1c,
  DAEMON: 0x1d,
  BINLOG_DUMP_GTID: 0x1e,
  RESET_CONNECTION: 0x1f,
} as const;

/** First byte of a server response packet. */
export const RESPONSE = {
  OK: 0x00,
  LOCAL_INFILE: 0xfb,
  /** EOF (payload < 9 bytes) or, during auth, AuthSwitchRequest. */
  EOF: 0xfe,
  ERR: 0xff,
  /** During auth: more data for the current plugin. */
  AUTH_MORE_DATA: 0x01,
} as const;

/** Server error codes the proxy answers with, and their SQLSTATEs. */
export const ER = {
  DBACCESS_DENIED: { code: 1044, state: "42000" }, // Access denied for user '%s'@'%s' to database '%s'
  ACCESS_DENIED: { code: 1045, state: "28000" }, // Access denied for user '%s'@'%s' (using password: %s)
  NO_DB: { code: 1046, state: "3D000" }, // No database selected
  UNKNOWN_COM: { code: 1047, state: "08S01" }, // Unknown command
  BAD_DB: { code: 1049, state: "42000" }, // Unknown database '%s'
  HANDSHAKE: { code: 1043, state: "08S01" }, // Bad handshake
  NET_PACKET_TOO_LARGE: { code: 1153, state: "08S01" },
  SERVER_SHUTDOWN: { code: 1053, state: "08S01" },
  CON_COUNT: { code: 1040, state: "08004" }, // Too many connections
  NOT_SUPPORTED_AUTH_MODE: { code: 1251, state: "08004" },
  SPECIFIC_ACCESS_DENIED: { code: 1227, state: "42000" },
  NOT_ALLOWED_COMMAND: { code: 1148, state: "42000" }, // The used command is not allowed with this MariaDB version
  UNKNOWN_ERROR: { code: 1105, state: "HY000" },
  LOCK_WAIT_TIMEOUT: { code: 1205, state: "HY000" },
  NO_SUCH_THREAD: { code: 1094, state: "HY000" }, // Unknown thread id: %lu
  KILL_DENIED: { code: 1095, state: "HY000" }, // You are not owner of thread %lu
  CONNECTION_KILLED: { code: 1927, state: "70100" }, // Connection was killed
} as const;

export type ErrorCode = (typeof ER)[keyof typeof ER];

/** utf8mb4_general_ci: the collation id a greeting offers (clients pick their own in the reply). */
export const UTF8MB4_GENERAL_CI = 45;
