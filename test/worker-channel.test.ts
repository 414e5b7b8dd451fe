import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as nextMacrotask, setTimeout as sleep } from 'node:timers/promises';
import { BackupError } from '../src/index.js';
import { WorkerJob } from '../src/util/worker-channel.js';
import { rejectsWithCode } from './helpers/errors.js';
import type { ChannelTestData, ChannelTestMode, ChannelTestResult } from './helpers/channel.worker.js';

const WORKER = new URL('./helpers/channel.worker.js', import.meta.url);

function start(mode: ChannelTestMode, options: { window?: number; count?: number; bytes?: number; signal?: AbortSignal; heapMb?: number } = {}) {
  const counters = new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT);
  const data: ChannelTestData = { mode, counters, ...(options.count === undefined ? {} : { count: options.count }), ...(options.bytes === undefined ? {} : { bytes: options.bytes }) };
  const job = WorkerJob.start<Uint8Array, Uint8Array, ChannelTestResult, ChannelTestData>(WORKER, {
    data,
    name: 'The test worker',
    failCode: 'SOURCE_FAILED',
    ...(options.window === undefined ? {} : { window: options.window }),
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.heapMb ? { resourceLimits: { maxOldGenerationSizeMb: options.heapMb, maxYoungGenerationSizeMb: 4 } } : {}),
  });
  const shared = new Int32Array(counters);
  return { job, sent: () => Atomics.load(shared, 0), openGate: () => (Atomics.store(shared, 1, 1), Atomics.notify(shared, 1)) };
}

/** Lets the other thread run: a few turns of the event loop and a short sleep. */
async function letRun(): Promise<void> {
  for (let turn = 0; turn < 5; turn++) await nextMacrotask();
  await sleep(30);
}

describe('the worker channel', () => {
  it('carries messages both ways, in order, transferring buffers, and settles with the result', async () => {
    const { job } = start('echo', { window: 2 });
    const echoed: number[] = [];
    const reading = (async () => {
      for await (const chunk of job) echoed.push(chunk[0] ?? -1);
    })();
    for (let index = 0; index < 20; index++) {
      const chunk = new Uint8Array(1024).fill(index);
      await job.send(chunk, [chunk.buffer]);
      assert.equal(chunk.byteLength, 0, 'the buffer was moved, not copied');
    }
    job.end();
    const result = await job.result;
    await reading;
    assert.deepEqual(echoed, Array.from({ length: 20 }, (_, index) => index));
    assert.equal(result.received, 20);
  });

  it('buffers given back are filled again by the other side, which then allocates none after the first few', async () => {
    const { job } = start('refill', { window: 2, count: 20, bytes: 4096 });
    for (let index = 0; index < 20; index++) {
      const chunk = (await job.receive()) as Uint8Array;
      assert.ok(chunk.length === 4096 && chunk.every((byte) => byte === index), `message ${index} whole`);
      job.giveBack(chunk.buffer as ArrayBuffer);
      assert.equal(chunk.length, 0, 'transferred: the view here is empty');
    }
    assert.equal(await job.receive(), undefined);
    // Up to the window and the one being filled when the first came back are fresh.
    assert.ok((await job.result).received >= 20 - 3, `${(await job.result).received} of 20 refilled`);
  });

  it('a slow consumer on the main thread holds at most a window of messages: the worker waits', async () => {
    const { job, sent } = start('produce', { window: 3, count: 40, bytes: 1024 * 1024 });
    let consumed = 0;
    let maxBuffered = 0;
    for (;;) {
      await letRun();
      maxBuffered = Math.max(maxBuffered, job.buffered);
      // The message being handled keeps its credit until the next one is asked for.
      const handled = Math.max(consumed - 1, 0);
      assert.ok(sent() <= handled + 3, `the worker sent ${sent()} messages while ${handled} were handled`);
      if ((await job.receive()) === undefined) break;
      consumed += 1;
    }
    assert.equal(consumed, 40);
    assert.ok(maxBuffered >= 2 && maxBuffered <= 3, `the worker ran ahead by the window, and no further: ${maxBuffered} buffered`);
    await job.result;
  });

  it('a slow worker holds the main thread\'s sends back to the window', async () => {
    const { job, openGate } = start('gate', { window: 2 });
    const settled: boolean[] = [];
    const sends = Array.from({ length: 6 }, (_, index) => job.send(new Uint8Array(16)).then(() => (settled[index] = true)));
    await letRun();
    const through = settled.filter(Boolean).length;
    openGate(); // before asserting: a thread left blocked would keep the test process alive
    assert.equal(through, 2, 'two sends went through, the others wait for credits');
    await Promise.all(sends);
    job.end();
    const { received, maxBuffered } = await job.result;
    assert.equal(received, 6);
    assert.ok(maxBuffered <= 2, `the worker held ${maxBuffered} messages`);
  });

  it("a BackupError thrown on the worker arrives whole: code, message, hint and cause chain", async () => {
    const { job } = start('throw');
    const error = await rejectsWithCode(job.result, 'TARGET_NOT_EMPTY', /^the job refused$/);
    assert.equal(error.hint, 'empty the target');
    const middle = error.cause as Error;
    assert.equal(middle.message, 'the middle failure');
    const inner = middle.cause as Error & { code?: string; path?: string };
    assert.equal(inner.message, 'the inner failure');
    assert.equal(inner.code, 'ENOENT');
    assert.equal(inner.path, '/nowhere');
  });

  it('any other error becomes a BackupError of the job\'s code, keeping its own code as the cause', async () => {
    const { job } = start('throw-plain');
    assert.ok(await job.receive(), 'the message sent before the failure');
    const error = await rejectsWithCode(job.receive(), 'SOURCE_FAILED', /The test worker failed: database is locked/);
    assert.equal((error.cause as { code?: string }).code, 'SQLITE_BUSY');
    assert.equal(await job.result.catch((failure: unknown) => failure), error, 'the result rejects with the same error');
  });

  for (const [mode, message] of [
    ['crash', /an uncaught failure/],
    ['exit', /exited \(code 3\) before it finished/],
  ] as const) {
    it(`a worker that ${mode === 'crash' ? 'throws outside its job' : 'calls process.exit'} fails the job, and a waiting receive and send too`, async () => {
      const { job, openGate } = start(mode, { window: 1 });
      assert.ok(await job.receive());
      const waiting = job.receive();
      openGate();
      await rejectsWithCode(waiting, 'SOURCE_FAILED', message);
      await rejectsWithCode(job.result, 'SOURCE_FAILED', message);
      await rejectsWithCode(job.send(new Uint8Array(1)), 'SOURCE_FAILED', message);
    });
  }

  it('a worker out of memory fails the job with a typed error', async () => {
    const { job } = start('oom', { heapMb: 16 });
    const error = await rejectsWithCode(job.result, 'SOURCE_FAILED');
    assert.equal((error.cause as { code?: string }).code, 'ERR_WORKER_OUT_OF_MEMORY');
  });

  it('aborting mid-stream stops the worker: receive, send and the result reject with ABORTED', async () => {
    const controller = new AbortController();
    const { job } = start('produce', { window: 2, count: 1_000_000, signal: controller.signal });
    assert.ok(await job.receive());
    assert.ok(await job.receive());
    const waiting = job.receive();
    controller.abort();
    await rejectsWithCode(waiting, 'ABORTED');
    await rejectsWithCode(job.result, 'ABORTED');
    await rejectsWithCode(job.send(new Uint8Array(1)), 'ABORTED');
  });

  it('a signal aborted before the start and stop() end the job the same way', async () => {
    const { job: early } = start('echo', { signal: AbortSignal.abort() });
    await rejectsWithCode(early.result, 'ABORTED');
    const { job } = start('echo');
    await job.stop();
    const error = await rejectsWithCode(job.result, 'ABORTED', /The test worker was stopped/);
    assert.ok(error instanceof BackupError);
  });
});
