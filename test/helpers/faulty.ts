import { Transform, Writable } from 'node:stream';
import type { Destination, Entry, Snapshot, Source, Upload } from '../../src/index.js';

/** What {@link interceptingWrites} does with a write: let it through, hold it (it never calls back), or fail it. */
export type WriteVerdict = 'pass' | 'hold' | Error;

/**
 * Wraps a destination so that each upload's writes go through `onWrite` first, which sees the bytes
 * written so far, this write's included; `onCommit` sees each commit. Decorates from outside, as
 * retry or rate limiting would.
 */
export function interceptingWrites(
  inner: Destination,
  onWrite: (written: number) => WriteVerdict,
  options: { description?: string; highWaterMark?: number; onCommit?: (name: string) => void } = {},
): Destination {
  return {
    ...inner,
    description: options.description ?? inner.description,
    async create(name: string): Promise<Upload> {
      const upload = await inner.create(name);
      let written = 0;
      const stream = new Writable({
        ...(options.highWaterMark === undefined ? {} : { highWaterMark: options.highWaterMark }),
        write(chunk: Buffer, _encoding, callback) {
          written += chunk.length;
          const verdict = onWrite(written);
          if (verdict === 'hold') return; // backpressure all the way up to the source
          if (verdict instanceof Error) return callback(verdict);
          upload.stream.write(chunk, callback);
        },
        final(callback) {
          upload.stream.end(callback);
        },
      });
      upload.stream.on('error', (error) => stream.destroy(error));
      return {
        stream,
        async commit() {
          options.onCommit?.(name);
          await upload.commit();
        },
        async abort() {
          stream.destroy();
          await upload.abort();
        },
      };
    },
    list: (prefix) => inner.list(prefix),
    open: (name) => inner.open(name),
    remove: (name) => inner.remove(name),
  };
}

/**
 * Wraps a destination so that every upload fails after `limit` bytes, as a disk filling up or a
 * connection dropping would.
 */
export function failingAfter(inner: Destination, limit: number, description = 'faulty'): Destination {
  return interceptingWrites(inner, (written) => (written > limit ? new Error(`injected failure after ${limit} bytes`) : 'pass'), { description });
}

/** Wraps a destination so that its uploads take `limit` bytes, then hold the next write (never calling back) and call `onHold`. */
export function holdingAfter(inner: Destination, limit: number, onHold: () => void): Destination {
  return interceptingWrites(inner, (written) => {
    if (written <= limit) return 'pass';
    onHold();
    return 'hold';
  });
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
