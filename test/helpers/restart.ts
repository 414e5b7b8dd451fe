import assert from 'node:assert/strict';
import { buffer } from 'node:stream/consumers';
import { withRetry, type BackupError, type Destination, type RetryInfo, type StoredObject } from '../../src/index.js';
import { put } from './put.js';
import { rejectsWithCode } from './errors.js';

/** A test server that can be stopped (killed, or frozen) and started again on the same port, with the same data. */
export interface Restartable {
  kill(): Promise<void>;
  restart(): Promise<void>;
}

/**
 * `inner` behind `withRetry`, with a server that `onRetry` restarts: each attempt waits for a
 * restart under way, so the first attempt meets the dead server and the retry a live one, with no
 * guessed delay. `attempts` counts the calls that reached `inner`.
 */
function acrossRestart(server: Restartable, inner: Destination) {
  const retries: RetryInfo[] = [];
  let attempts = 0;
  let restarting: Promise<void> = Promise.resolve();
  const gated: Destination = {
    ...inner,
    async *list(prefix) {
      attempts++;
      await restarting;
      yield* inner.list(prefix);
    },
    async open(name, range) {
      attempts++;
      await restarting;
      return inner.open(name, range);
    },
  };
  const destination = withRetry(gated, {
    attempts: 2,
    initialDelay: 0,
    onRetry: (info) => {
      retries.push(info);
      restarting = server.restart();
    },
  });
  return { destination, retries, attempts: () => attempts };
}

async function names(listing: AsyncIterable<StoredObject>): Promise<string[]> {
  const found: string[] = [];
  for await (const object of listing) found.push(object.name);
  return found;
}

/**
 * Checks that `withRetry(make())` lists and opens across a restart of the server (each killed
 * before the call, started again by the retry), that each failure was one transient
 * `DESTINATION_FAILED`, and that a destination refused its login (`refused()`) is tried once.
 */
export async function checkRetriedAcrossRestart(server: Restartable, make: () => Destination, refused: () => Destination): Promise<void> {
  const bytes = Buffer.from('an archive that outlives a restart of its server');
  await put(make(), 'a.tar.gz', bytes);
  const { destination, retries, attempts } = acrossRestart(server, make());
  await server.kill();
  assert.deepEqual(await names(destination.list()), ['a.tar.gz']);
  await server.kill();
  assert.ok((await buffer(await destination.open('a.tar.gz'))).equals(bytes));
  assert.deepEqual(
    retries.map((r) => [r.operation, r.attempt, r.error.code, r.error.transient]),
    [
      ['list', 1, 'DESTINATION_FAILED', true],
      ['open a.tar.gz', 1, 'DESTINATION_FAILED', true],
    ],
  );
  assert.equal(attempts(), 4);

  const denied = acrossRestart(server, refused());
  const error: BackupError = await rejectsWithCode(names(denied.destination.list()), 'DESTINATION_FAILED');
  assert.equal(error.transient, false, error.message);
  assert.deepEqual(denied.retries, []);
  assert.equal(denied.attempts(), 1, 'a refused login is tried once');
}
