/** A stream that can be waited on: Node's streams and streamx's (tar-stream) both qualify. */
interface EventSource {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- both emitter typings, whatever their listener types
  on(event: any, listener: (...args: any[]) => void): unknown;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  off(event: any, listener: (...args: any[]) => void): unknown;
}

/**
 * Resolves on `event` ('drain', 'finish'); rejects if the stream errors or closes first. A stream
 * destroyed without an error emits neither 'drain' nor 'error', so `events.once` would wait forever
 * (seen: a multipart upload whose body was destroyed by the SDK when the server went away).
 */
export function waitFor(stream: EventSource, event: 'drain' | 'finish'): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = (error?: Error) => {
      stream.off(event, onEvent);
      stream.off('error', onError);
      stream.off('close', onClose);
      if (error) reject(error);
      else resolve();
    };
    const onEvent = () => settle();
    const onError = (error: Error) => settle(error);
    const onClose = () => settle(new Error(`The stream closed before '${event}'`));
    stream.on(event, onEvent);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}

/** Reads a small body whole; `tooLarge` is thrown as soon as it passes `limit` bytes. */
export async function readLimited(body: AsyncIterable<Uint8Array>, limit: number, tooLarge: () => Error): Promise<Buffer> {
  const pieces: Uint8Array[] = [];
  let size = 0;
  for await (const piece of body) {
    size += piece.byteLength;
    if (size > limit) throw tooLarge();
    pieces.push(piece);
  }
  return Buffer.concat(pieces, size);
}
