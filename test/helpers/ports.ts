import { once } from 'node:events';
import { connect, createServer } from 'node:net';

/** A TCP port of 127.0.0.1 that nothing listens on right now, for a test server to take. */
export async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/** Polls `ready` until it resolves true, failing with `what` once the server has exited or 10 s passed. */
export async function waitUntilServing(ready: () => Promise<boolean>, exited: () => boolean, what: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    if (await ready().catch(() => false)) return;
    if (attempt > 200 || exited()) throw new Error(`${what} did not start`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Whether something on 127.0.0.1 accepts TCP connections on `port` now: a server's readiness probe. */
export function acceptsConnections(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.destroy();
      resolve(true);
    }).on('error', () => resolve(false));
  });
}
