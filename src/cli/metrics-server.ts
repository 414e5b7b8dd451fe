import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { BackupError } from '../errors.js';

/** `backupkit run`'s /metrics endpoint. */
export interface MetricsServer {
  /** Where it listens, as `http://127.0.0.1:9464/metrics` (the port the system chose for port 0). */
  readonly url: string;
  /** Stops listening and ends open connections: a scraper's keep-alive would otherwise keep the process up. */
  close(): Promise<void>;
}

/**
 * Serves `registry` at `GET /metrics` on `host:port`, in Prometheus's text format; every other
 * path is a 404. Fails with INVALID_OPTIONS when it cannot listen (the port taken, the host not
 * this machine's), before any backup starts.
 */
export async function serveMetrics(registry: Registry, port: number, host: string): Promise<MetricsServer> {
  const server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    if (path !== '/metrics' || (request.method !== 'GET' && request.method !== 'HEAD')) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('Not found: metrics are at /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (error: unknown) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`${(error as Error).message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((cause: unknown) => {
    throw new BackupError('INVALID_OPTIONS', `Cannot serve metrics on ${host}:${port}: ${(cause as Error).message}`, {
      cause,
      hint: 'Give --metrics-port (or `schedule.metrics.port` in the config file) a port that is free, and `schedule.metrics.host` an address of this machine.',
    });
  });
  const address = server.address() as AddressInfo;
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${shown}:${address.port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
