import { Transform, Writable } from 'node:stream';
import type { Destination, Entry, Snapshot, Source, Upload } from '../../src/index.js';

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

/** Where a {@link faultySource} strikes: each hook may act (cancel the backup, change the files) or throw (a fault). */
export interface SourceHooks {
  /** Once the source's `open()` has returned its snapshot, before the backup has it. */
  opened?(): void | Promise<void>;
  /** Before each `estimate()`. */
  estimate?(): void;
  /** The entry hook: the entries handed to the backup, made from the snapshot's own. */
  entries?(entries: AsyncIterable<Entry>): AsyncIterable<Entry>;
  /** Once the snapshot's `close()` has returned. */
  closed?(): void;
}

/**
 * Wraps a source, which does all the work, so that its hooks run at their points; every `close()`
 * is counted. Incremental snapshots keep their `changes()` and `state()`.
 */
export function faultySource(source: Source, hooks: SourceHooks): { source: Source; closes: () => number } {
  let closes = 0;
  const wrapped: Source = {
    ...source,
    async open(context) {
      const snapshot = await source.open(context);
      const faulty: Snapshot = {
        async estimate() {
          hooks.estimate?.();
          return snapshot.estimate();
        },
        entries: () => hooks.entries?.(snapshot.entries()) ?? snapshot.entries(),
        async close() {
          closes += 1;
          await snapshot.close();
          hooks.closed?.();
        },
        ...(snapshot.changes ? { changes: snapshot.changes.bind(snapshot) } : {}),
        ...(snapshot.state ? { state: snapshot.state.bind(snapshot) } : {}),
      };
      await hooks.opened?.();
      return faulty;
    },
  };
  return { source: wrapped, closes: () => closes };
}

/** An entry whose body passes through `map`. */
export function withBody(entry: Entry, map: (body: AsyncIterable<Uint8Array>) => AsyncIterable<Uint8Array>): Entry {
  const { body } = entry;
  return body ? { ...entry, body: () => map(body()) } : entry;
}

/**
 * Wraps a destination so that reading an object strikes once more than `limit` bytes of it have
 * been read: the read fails with the error `strike` returns, or goes on if it returns none (having
 * cancelled the restore, say).
 */
export function readsStrikingAfter(inner: Destination, limit: number, strike: () => Error | undefined): Destination {
  return {
    ...inner,
    create: (name) => inner.create(name),
    list: (prefix) => inner.list(prefix),
    async open(name, range) {
      const stream = await inner.open(name, range);
      let read = 0;
      let struck = false;
      const counted = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          read += chunk.length;
          if (struck || read <= limit) return callback(null, chunk);
          struck = true;
          const error = strike();
          callback(error ?? null, error ? undefined : chunk);
        },
      });
      stream.once('error', (error) => counted.destroy(error));
      counted.once('close', () => stream.destroy());
      return stream.pipe(counted);
    },
    remove: (name) => inner.remove(name),
  };
}
