// A benchmark baseline, not product code: the least any Node.js TCP proxy does. Each accepted
// connection gets one connection to the target and bytes are copied both ways as they arrive (no
// parsing, no pooling, no backpressure beyond the sockets' own). `npm run bench:proxy` measures it
// beside tenantfleet's proxy and PgBouncer: its throughput and CPU are the ceiling a Node.js proxy
// can reach on the machine, and with `--hold` (accept and keep connections, no target) its memory
// per connection is the floor of a Node.js process holding idle clients.
//
//   node scripts/lib/node-relay-main.mjs <targetHost> <targetPort>   relay
//   node scripts/lib/node-relay-main.mjs --hold                       hold only
// Prints `{"ready":true,"port":N}` once it listens on 127.0.0.1 (a free port).
import net from "node:net";

const [a, b] = process.argv.slice(2);
const hold = a === "--hold";
if (!hold && !(a && Number(b) > 0)) {
  process.stderr.write("usage: node-relay-main.mjs <targetHost> <targetPort> | --hold\n");
  process.exit(2);
}

const held = new Set();
const server = net.createServer((client) => {
  client.setNoDelay(true);
  client.on("error", () => client.destroy());
  if (hold) {
    held.add(client);
    client.on("close", () => held.delete(client));
    client.on("data", () => undefined);
    return;
  }
  const upstream = net.connect({ host: a, port: Number(b) });
  upstream.setNoDelay(true);
  upstream.on("error", () => client.destroy());
  client.on("close", () => upstream.destroy());
  upstream.on("close", () => client.destroy());
  client.on("data", (chunk) => upstream.write(chunk));
  upstream.on("data", (chunk) => client.write(chunk));
});
server.listen(0, "127.0.0.1", () => process.stdout.write(JSON.stringify({ ready: true, port: server.address().port }) + "\n"));
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
