/**
 * The queues that keep memory bounded: the bounded queue between parallel producers and the tar
 * stream, the line spool that keeps per-entry records on disk, and the bounded line splitter.
 * Blocking is observed by whether a promise has settled once pending callbacks ran, never by time.
 */
import assert from 'node:assert/strict';
import { access, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { describe, it } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import { BoundedQueue } from '../../src/util/bounded-queue.js';
import { LineSpool } from '../../src/util/line-spool.js';
import { boundedLines } from '../../src/util/lines.js';

/** Whether `promise` has settled after the event loop ran what was pending. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(
    () => (done = true),
    () => (done = true),
  );
  await turn();
  return done;
}

async function* chunks(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) yield Buffer.from(part);
}

async function all<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out = [];
  for await (const item of iterable) out.push(item);
  return out;
}

describe('bounded queue', () => {
  it('holds a producer while it is full and lets it on when the consumer takes an item; delivers in order', async () => {
    const queue = new BoundedQueue<number>(2);
    await queue.push(1);
    await queue.push(2);
    const third = queue.push(3);
    assert.equal(await settled(third), false, 'full: the third push waits');
    const consumer = queue.drain();
    assert.deepEqual(await consumer.next(), { value: 1, done: false });
    await third;
    queue.end();
    assert.deepEqual(await all(consumer), [2, 3]);
  });

  it('fails the consumer and every waiting producer with the first failure', async () => {
    const queue = new BoundedQueue<number>(1);
    await queue.push(1);
    const waiting = queue.push(2);
    const first = new Error('first');
    queue.fail(first);
    queue.fail(new Error('second'));
    await assert.rejects(waiting, first);
    await assert.rejects(queue.push(3), first);
    await assert.rejects(all(queue.drain()), first);
  });

  it('releases waiting producers when the consumer leaves early', async () => {
    const queue = new BoundedQueue<number>(1);
    await queue.push(1);
    const [second, third] = [queue.push(2), queue.push(3)];
    for await (const item of queue.drain()) {
      assert.equal(item, 1);
      break;
    }
    await second; // taking 1 made room for it
    await assert.rejects(third, /closed/);
    await assert.rejects(queue.push(4), /closed/);
  });
});

describe('line spool', () => {
  it('gives back every line appended, past its flush size, and leaves nothing in the temp folder', async () => {
    const label = `unit-test-${process.pid}`;
    const spool = await LineSpool.create(label);
    const lines = Array.from({ length: 5000 }, (_, i) => JSON.stringify({ i, path: `sources/app/ü-${i}`, pad: 'x'.repeat(i % 200) }));
    for (const line of lines) await spool.append(line);
    assert.equal(spool.size, lines.reduce((sum, line) => sum + Buffer.byteLength(line) + 1, 0));
    assert.deepEqual(await all(boundedLines(await spool.read(), 1024, () => new Error('too long'))), lines);
    const folders = (await readdir(tmpdir())).filter((name) => name.startsWith(`backupkit-${label}-`));
    assert.equal(folders.length, 1, 'one private folder while it lives');
    await spool.dispose();
    await assert.rejects(access(`${tmpdir()}/${folders[0]}`), { code: 'ENOENT' });
  });
});

describe('bounded lines', () => {
  // Splitting itself is tested through manifestLines, in manifest-check.test.ts.
  it('refuses a line longer than its limit as soon as that many bytes came without a newline', async () => {
    const tooLong = new Error('too long');
    let pulled = 0;
    async function* endless() {
      for (;;) {
        pulled += 1;
        yield Buffer.alloc(10, 0x61);
      }
    }
    await assert.rejects(all(boundedLines(endless(), 25, () => tooLong)), tooLong);
    assert.equal(pulled, 3, 'stops at the chunk that crosses the limit');
    assert.deepEqual(await all(boundedLines(chunks('x'.repeat(25), '\n'), 25, () => tooLong)), ['x'.repeat(25)], 'exactly the limit is allowed');
  });
});
