import { Writable } from 'node:stream';
import type { Destination, Upload } from '../../src/index.js';

/**
 * Wraps a destination so that every upload fails after `limit` bytes, as a disk filling up or a
 * connection dropping would. Decorates from outside, as retry or rate limiting would.
 */
export function failingAfter(inner: Destination, limit: number, description = 'faulty'): Destination {
  return {
    ...inner,
    description,
    async create(name: string): Promise<Upload> {
      const upload = await inner.create(name);
      let written = 0;
      const stream = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          written += chunk.length;
          if (written > limit) return callback(new Error(`injected failure after ${limit} bytes`));
          upload.stream.write(chunk, callback);
        },
        final(callback) {
          upload.stream.end(callback);
        },
      });
      upload.stream.on('error', (error) => stream.destroy(error));
      return { stream, commit: () => upload.commit(), abort: () => upload.abort() };
    },
    list: (prefix) => inner.list(prefix),
    open: (name) => inner.open(name),
    remove: (name) => inner.remove(name),
  };
}
