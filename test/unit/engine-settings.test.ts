import { describe, expect, it } from "vitest";
import { postgresSettings, renderPgHba, renderPostgresConf } from "../../dynamic-providers/engines/postgres/settings";
import { mysqlSettings, renderMyCnf } from "../../dynamic-providers/engines/mysql/settings";
import { renderRedisAcl } from "../../dynamic-providers/engines/redis/settings";

describe("engine settings (what migrations need)", () => {
  it("PostgreSQL: logical WAL, replication slots and senders, SCRAM", () => {
    const s = postgresSettings({ port: 25432, listenAddresses: "127.0.0.1" });
    expect(s).toMatchObject({ wal_level: "logical", password_encryption: "scram-sha-256", port: 25432 });
    expect(Number(s.max_replication_slots)).toBeGreaterThanOrEqual(10);
    expect(Number(s.max_wal_senders)).toBeGreaterThanOrEqual(10);
    const conf = renderPostgresConf(s);
    expect(conf).toContain("wal_level = 'logical'");
    expect(conf).toContain("port = 25432");
  });

  it("PostgreSQL: quotes values safely in the conf file", () => {
    expect(renderPostgresConf({ log_line_prefix: "it's" })).toContain("log_line_prefix = 'it''s'");
  });

  it("PostgreSQL: pg_hba allows only SCRAM from the given networks, including replication", () => {
    expect(renderPgHba(["10.0.0.0/8"]).split("\n").filter((l) => l && !l.startsWith("#"))).toEqual([
      "host all all 10.0.0.0/8 scram-sha-256",
      "host replication all 10.0.0.0/8 scram-sha-256",
    ]);
  });

  it("MariaDB: row binlog with GTID, the given unique server id and a GTID domain of its own", () => {
    const cnf = renderMyCnf(
      mysqlSettings({ port: 23306, bindAddress: "127.0.0.1", serverId: 23306, dataDir: "/d", socket: "/s", pidFile: "/p", logError: "/l" }),
    );
    expect(cnf).toContain("binlog-format = ROW");
    expect(cnf).toContain("gtid-strict-mode = ON");
    expect(cnf).toContain("server-id = 23306");
    expect(cnf).toContain("gtid-domain-id = 23306");
    expect(cnf).toContain("slave-parallel-threads = 4"); // a migration's replica catches up in parallel
    expect(cnf).toContain("skip-slave-start = ON"); // a restarted server never resumes a move's replication without its filter
    expect(cnf).toContain("log-bin = binlog");
  });

  it("Redis: the ACL file turns the default user off and never holds the password in plain text", () => {
    const acl = renderRedisAcl("admin", "hunter2-password");
    expect(acl).toContain("user default off");
    expect(acl).toMatch(/^user admin on #[0-9a-f]{64} ~\* &\* \+@all$/m);
    expect(acl).not.toContain("hunter2-password");
  });
});
