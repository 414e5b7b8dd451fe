/**
 * A worker for the worker channel's own tests: each mode is one way a job behaves or ends.
 * `counters` (Int32 [sent, gate]) lets the test see how far the worker got without a message.
 */
import { BackupError } from '../../src/errors.js';
import { serveWorkerJob } from '../../src/util/worker-channel.js';

export type ChannelTestMode = 'echo' | 'produce' | 'refill' | 'gate' | 'throw' | 'throw-plain' | 'crash' | 'exit' | 'oom';
export interface ChannelTestData {
  mode: ChannelTestMode;
  counters: SharedArrayBuffer;
  /** Messages to produce; 'produce' only. */
  count?: number;
  /** Bytes of each message produced. */
  bytes?: number;
}
export interface ChannelTestResult {
  received: number;
  /** The most messages the worker held unconsumed at once. */
  maxBuffered: number;
}

serveWorkerJob<ChannelTestData, Uint8Array, Uint8Array, ChannelTestResult>(async ({ mode, counters, count = 0, bytes = 1 }, channel) => {
  const shared = new Int32Array(counters);
  const produce = async (total: number) => {
    for (let index = 0; index < total; index++) {
      const chunk = new Uint8Array(bytes).fill(index % 256);
      await channel.send(chunk, [chunk.buffer]);
      Atomics.add(shared, 0, 1);
    }
  };
  switch (mode) {
    case 'echo':
    case 'gate': {
      // 'gate' holds the thread until the test opens the gate: what the main thread sends meanwhile piles up here.
      if (mode === 'gate') Atomics.wait(shared, 1, 0);
      let received = 0;
      let maxBuffered = 0;
      for await (const chunk of channel) {
        received += 1;
        maxBuffered = Math.max(maxBuffered, channel.buffered + 1);
        if (mode === 'echo') await channel.send(chunk, [chunk.buffer as ArrayBuffer]);
      }
      return { received, maxBuffered };
    }
    case 'produce':
      await produce(count);
      return { received: 0, maxBuffered: 0 };
    case 'refill': {
      // Fills a buffer the main thread gave back when there is one: `received` counts them.
      let refilled = 0;
      for (let index = 0; index < count; index++) {
        const returned = channel.takeReturned(bytes);
        if (returned) refilled += 1;
        const chunk = new Uint8Array(returned ?? new ArrayBuffer(bytes)).fill(index % 256);
        await channel.send(chunk, [chunk.buffer]);
      }
      return { received: refilled, maxBuffered: 0 };
    }
    case 'throw': {
      const cause = Object.assign(new Error('the inner failure'), { code: 'ENOENT', path: '/nowhere' });
      throw new BackupError('TARGET_NOT_EMPTY', 'the job refused', { hint: 'empty the target', cause: new Error('the middle failure', { cause }) });
    }
    case 'throw-plain':
      await produce(1);
      throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
    case 'crash':
      await produce(1);
      Atomics.wait(shared, 1, 0); // until the test holds the message: ending sooner may drop it
      setTimeout(() => {
        throw new Error('an uncaught failure');
      });
      return new Promise<never>(() => {});
    case 'exit':
      await produce(1);
      Atomics.wait(shared, 1, 0);
      process.exit(3);
      break;
    case 'oom': {
      const hoard: number[][] = [];
      for (;;) hoard.push(Array.from({ length: 100_000 }, (_, i) => i));
    }
  }
  throw new Error(`unknown mode ${String(mode)}`);
});
