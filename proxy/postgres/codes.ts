/**
 * PostgreSQL frontend/backend protocol v3 constants.
 * Spec: https://www.postgresql.org/docs/current/protocol-message-formats.html and
 * https://www.postgresql.org/docs/current/errcodes-appendix.html (SQLSTATE).
 */

/** Special codes sent in place of a protocol version in an untyped startup packet (§55.2.10–12). */
export const STARTUP = {
  PROTOCOL_3_0: 196608, // 3 << 16
  SSL_REQUEST: 80877103,
  GSSENC_REQUEST: 80877104,
  CANCEL_REQUEST: 80877102,
} as const;

/** Message type bytes sent by the client (frontend). */
export const FE = {
  Bind: 0x42, // 'B'
  Close: 0x43, // 'C'
  CopyData: 0x64, // 'd'
  CopyDone: 0x63, // 'c'
  CopyFail: 0x66, // 'f'
  Describe: 0x44, // 'D'
  Execute: 0x45, // 'E'
  Flush: 0x48, // 'H'
  FunctionCall: 0x46, // 'F'
  Parse: 0x50, // 'P'
  Password: 0x70, // 'p': PasswordMessage, SASLInitialResponse, SASLResponse
  Query: 0x51, // 'Q'
  Sync: 0x53, // 'S'
  Terminate: 0x58, // 'X'
} as const;

/** Message type bytes sent by the server (backend). */
export const BE = {
  Authentication: 0x52, // 'R'
  BackendKeyData: 0x4b, // 'K'
  BindComplete: 0x32, // '2'
  CloseComplete: 0x33, // '3'
  CommandComplete: 0x43, // 'C'
  CopyInResponse: 0x47, // 'G'
  CopyOutResponse: 0x48, // 'H'
  CopyBothResponse: 0x57, // 'W'
  DataRow: 0x44, // 'D'
  EmptyQueryResponse: 0x49, // 'I'
  ErrorResponse: 0x45, // 'E'
  NegotiateProtocolVersion: 0x76, // 'v'
  NoData: 0x6e, // 'n'
  NoticeResponse: 0x4e, // 'N'
  NotificationResponse: 0x41, // 'A'
  ParameterDescription: 0x74, // 't'
  ParameterStatus: 0x53, // 'S'
  ParseComplete: 0x31, // '1'
  PortalSuspended: 0x73, // 's'
  ReadyForQuery: 0x5a, // 'Z'
  RowDescription: 0x54, // 'T'
} as const;

/** Authentication request codes carried in an 'R' message. */
export const AUTH = {
  Ok: 0,
  CleartextPassword: 3,
  MD5Password: 5,
  SASL: 10,
  SASLContinue: 11,
  SASLFinal: 12,
} as const;

/** Transaction status byte of ReadyForQuery. */
export const TX = {
  Idle: 0x49, // 'I'
  InTransaction: 0x54, // 'T'
  Failed: 0x45, // 'E'
} as const;

/** SQLSTATE codes the proxy raises itself. */
export const SQLSTATE = {
  InvalidPassword: "28P01",
  InvalidAuthorization: "28000",
  InvalidCatalogName: "3D000",
  ProtocolViolation: "08P01",
  ConnectionFailure: "08006",
  CannotConnectNow: "57P03",
  TooManyConnections: "53300",
  AdminShutdown: "57P01",
  QueryCanceled: "57014",
  FeatureNotSupported: "0A000",
  InternalError: "XX000",
} as const;

/** Largest message the proxy accepts from a client (PostgreSQL's own limit for most messages is 1 GB). */
export const MAX_MESSAGE_BYTES = 1 << 30;
/** Largest startup packet (PostgreSQL: MAX_STARTUP_PACKET_LENGTH = 10000). */
export const MAX_STARTUP_BYTES = 10_000;
