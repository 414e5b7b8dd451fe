/**
 * withRetry around a real memory destination, with failures injected from outside as
 * test/helpers/faulty.ts does; test/s3.test.ts runs it against a frozen moto_server.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, it } from 'node:test';
import { BackupError, memory, withRetry, type Destination, type RetryInfo } from '../src/index.js';
import { testDestination } from './conformance/destination.js';
import { put } from './helpers/put.js';
import { rejectsWithCode } from './helpers/errors.js';

const transient = (what: string) => new BackupError('DESTINATION_FAILED', `${what}: connection reset`, { transient: true });

/** Counts each call, and fails the first `failures` of `method` with `error`. */
function failingFirst(inner: Destination, method: 'open' | 'list' | 'remove' | 'create', failures: number, error: () => BackupError = () => transient(method)) {
  const calls = { open: 0, list: 0, remove: 0, create: 0 };
  const fail = (name: typeof method) => ++calls[name] <= failures && name === method;
  const destination: Destination = {
    ...inner,
    async create(name) {
      if (fail('create')) throw error();
      return inner.create(name);
    },
    async open(name, range) {
      if (fail('open')) throw error();
      return inner.open(name, range);
    },
    async *list(prefix) {
      if (fail('list')) throw error();
      yield* inner.list(prefix);
    },
    async remove(name) {
      if (fail('remove')) throw error();
      await inner.remove(name);
    },
  };
  return { destination, calls };
}

const quick = (retries: RetryInfo[] = []) => ({ attempts: 3, initialDelay: 0, onRetry: (info: RetryInfo) => void retries.push(info) });

testDestination('memory behind withRetry', async () => ({ destination: withRetry(memory(), quick()), cleanup: async () => {} }), { lease: true });

describe('withRetry', () => {
  it('makes a call failing transiently again, up to `attempts`, then rejects with the last failure', async () => {
    const retries: RetryInfo[] = [];
    const inner = memory();
    await put(inner, 'a.tar.gz', Buffer.from('archive'));
    const twice = failingFirst(inner, 'open', 2);
    assert.equal((await buffer(await withRetry(twice.destination, quick(retries)).open('a.tar.gz'))).toString(), 'archive');
    assert.deepEqual(retries.map((r) => [r.operation, r.attempt, r.error.code]), [['open a.tar.gz', 1, 'DESTINATION_FAILED'], ['open a.tar.gz', 2, 'DESTINATION_FAILED']]);
    const always = failingFirst(inner, 'list', Infinity);
    await rejectsWithCode((async () => { for await (const object of withRetry(always.destination, quick()).list()) void object; })(), 'DESTINATION_FAILED', /connection reset/);
    assert.equal(always.calls.list, 3);
  });

  it('passes any other failure through at once', async () => {
    const { destination, calls } = failingFirst(memory(), 'remove', 1, () => new BackupError('DESTINATION_FAILED', 'permission denied'));
    const retries: RetryInfo[] = [];
    await rejectsWithCode(withRetry(destination, quick(retries)).remove('a.tar.gz'), 'DESTINATION_FAILED', /permission denied/);
    await rejectsWithCode(withRetry(memory(), quick(retries)).open('missing.tar.gz'), 'NOT_FOUND');
    assert.equal(calls.remove, 1);
    assert.deepEqual(retries, []);
  });

  it('takes NOT_FOUND after a failed remove as done: that attempt removed the object', async () => {
    const inner = memory();
    await put(inner, 'a.tar.gz', Buffer.from('archive'));
    const removedThenFailed: Destination = {
      ...inner,
      async remove(name) {
        await inner.remove(name);
        throw transient('remove');
      },
    };
    await withRetry(removedThenFailed, quick()).remove('a.tar.gz');
    await rejectsWithCode(inner.open('a.tar.gz'), 'NOT_FOUND');
  });

  it('never retries a commit, which is not idempotent', async () => {
    const inner = memory();
    let commits = 0;
    const failingCommit: Destination = {
      ...inner,
      async create(name) {
        const upload = await inner.create(name);
        return {
          ...upload,
          commit: async () => {
            commits += 1;
            throw transient('commit');
          },
        };
      },
    };
    const upload = await withRetry(failingCommit, quick()).create('a.tar.gz');
    upload.stream.end('archive');
    await rejectsWithCode(upload.commit(), 'DESTINATION_FAILED', /commit/);
    assert.equal(commits, 1);
  });

  it('resumes a download that breaks midway from the byte it reached, more times than `attempts` if it moves on each time', async () => {
    const inner = memory();
    const bytes = randomBytes(1024 * 1024 + 5);
    await put(inner, 'a.tar.gz', bytes);
    let breaks = 3;
    const breaksThrice: Destination = {
      ...inner,
      async open(name, range) {
        const body = await inner.open(name, range);
        if (breaks === 0) return body;
        breaks -= 1;
        return Readable.from(
          (async function* () {
            let read = 0;
            for await (const chunk of body as AsyncIterable<Buffer>) {
              if (read > 300_000) throw transient('read');
              read += chunk.length;
              yield chunk;
            }
          })(),
        );
      },
    };
    const retries: RetryInfo[] = [];
    const read = await buffer(await withRetry(breaksThrice, { ...quick(retries), attempts: 2 }).open('a.tar.gz', { offset: 3, length: bytes.length - 4 }));
    assert.ok(read.equals(bytes.subarray(3, bytes.length - 1)));
    const resumedAt = retries.map((r) => Number(/^read a\.tar\.gz from byte (\d+)$/.exec(r.operation)?.[1]));
    assert.equal(resumedAt.length, 3);
    assert.ok(resumedAt[0]! > 3 && resumedAt[0]! < resumedAt[1]! && resumedAt[1]! < resumedAt[2]!, `resumed at ${resumedAt.join(', ')}`);
  });

  it('stops waiting between attempts when its signal aborts: ABORTED', async () => {
    const controller = new AbortController();
    const { destination } = failingFirst(memory(), 'create', Infinity);
    const retrying = withRetry(destination, { attempts: 5, initialDelay: 3_600_000, signal: controller.signal, onRetry: () => controller.abort() });
    await rejectsWithCode(retrying.create('a.tar.gz'), 'ABORTED');
  });

  it('refuses attempts below 1 and negative delays', () => {
    assert.throws(() => withRetry(memory(), { attempts: 0 }), { code: 'INVALID_OPTIONS' });
    assert.throws(() => withRetry(memory(), { initialDelay: -1 }), { code: 'INVALID_OPTIONS' });
  });
});
