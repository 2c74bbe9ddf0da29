import * as net from "node:net";

/** A free TCP port on host (bind :0, read it, close). A small race: callers that start a server on
 * it retry when the port was taken meanwhile. */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, host, () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}
