/**
 * A pass-through HTTP proxy in front of a real server (moto, Azurite), recording each request's
 * method, path and headers: what a client sends on the wire, checked without replacing the server.
 */
import { once } from 'node:events';
import { createServer, request, type IncomingHttpHeaders } from 'node:http';

export interface RecordedRequest {
  method: string;
  /** Path and query, as sent. */
  url: string;
  headers: IncomingHttpHeaders;
}

export interface RecordingProxy {
  /** Where clients send their requests: `http://127.0.0.1:port`. */
  endpoint: string;
  /** Every request forwarded so far, in order. */
  requests: RecordedRequest[];
  stop(): Promise<void>;
}

/**
 * `busyFor`: how many first requests are answered `503 Server Busy` (in Azure's words, which S3's
 * resemble) instead of being forwarded, as an overloaded service answers.
 */
export async function startRecordingProxy(target: string, { busyFor = 0 }: { busyFor?: number } = {}): Promise<RecordingProxy> {
  const upstream = new URL(target);
  const requests: RecordedRequest[] = [];
  const server = createServer((incoming, response) => {
    requests.push({ method: incoming.method ?? '', url: incoming.url ?? '', headers: incoming.headers });
    if (requests.length <= busyFor) {
      incoming.resume();
      const body = '<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code><Message>The server is busy.</Message></Error>';
      response.writeHead(503, { 'content-type': 'application/xml', 'x-ms-error-code': 'ServerBusy', 'content-length': Buffer.byteLength(body) });
      response.end(body);
      return;
    }
    const forwarded = request(
      { host: upstream.hostname, port: upstream.port, method: incoming.method, path: incoming.url, headers: incoming.headers },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      },
    );
    forwarded.on('error', () => response.destroy());
    incoming.pipe(forwarded);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    async stop() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}
