/**
 * The lease cases of the destination conformance suite (`Destination.lease`): run on every
 * destination that keeps leases; one that does not must be refused by `startBackup({ lease })`.
 * Expiry is waited for as an outcome (another taker gets the lease), never as a length of time.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BackupError, Database, files, listBackups, type Destination, type Lease, type LeaseOptions } from '../../src/index.js';
import { rejectsWithCode } from '../helpers/errors.js';

type WithDestination = (fn: (d: Destination) => Promise<void>) => () => Promise<void>;

/** What `startBackup({ lease })` takes. */
const BACKUP_LEASE = 'backupkit.lease';
/** Short, so that expiry comes soon; the tests wait for it to be taken, not for a time. */
const SHORT: LeaseOptions = { ttlMs: 600, holder: 'short-lived holder' };
const LONG: LeaseOptions = { ttlMs: 600_000, holder: 'long-lived holder' };
const FIRST: LeaseOptions = { ttlMs: 60_000, holder: 'first holder' };

/** Takes the lease as soon as it is free (expired or released), trying again while it is held. */
export async function takeWhenFree(d: Destination, name: string, options: LeaseOptions): Promise<Lease> {
  for (;;) {
    try {
      return await d.lease!(name, options);
    } catch (error) {
      if (!(error instanceof BackupError && error.code === 'LEASE_HELD')) throw error;
      await sleep(50);
    }
  }
}

/** When the holder's lease expires, as LEASE_HELD tells. */
function expiryIn(error: BackupError): number {
  const until = /until (\S+)$/.exec(error.message)?.[1];
  assert.ok(until !== undefined, `LEASE_HELD names the expiry: ${error.message}`);
  assert.ok(error.hint.includes(until), 'and so does its hint');
  return Date.parse(until);
}

async function objectNames(d: Destination): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const object of d.list()) out.push(object.name);
  } catch (error) {
    if (!(error instanceof BackupError && error.code === 'NOT_FOUND')) throw error;
  }
  return out.sort();
}

async function withFolder(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'backupkit-conformance-lease-'));
  try {
    await writeFile(join(dir, 'a.txt'), 'leased');
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function testLease(withDestination: WithDestination, keepsLeases: boolean): void {
  if (!keepsLeases) {
    it('has no lease: startBackup({ lease }) refuses it with INVALID_OPTIONS and writes nothing', withDestination(async (d) => {
      assert.equal(d.lease, undefined);
      await withFolder(async (dir) => {
        const database = new Database({ sources: [files({ name: 'f', dir })] });
        await rejectsWithCode(database.startBackup({ to: d, lease: true }).done, 'INVALID_OPTIONS', /cannot hold a lease/);
        assert.deepEqual(await objectNames(d), []);
      });
    }));
    return;
  }

  it('lease: a second taker of a held lease gets LEASE_HELD naming the holder and when it expires', withDestination(async (d) => {
    const first = await d.lease!('one.lease', LONG);
    assert.ok(Number.isSafeInteger(first.token) && first.token > 0);
    const held = await rejectsWithCode(d.lease!('one.lease', SHORT), 'LEASE_HELD', /long-lived holder/);
    assert.ok(expiryIn(held) > Date.now() + LONG.ttlMs / 2, 'the expiry is the holder\'s, not the asker\'s');
    assert.ok(held.hint.includes('long-lived holder'));
    await first.check();
    await d.lease!('another.lease', SHORT).then((other) => other.release()); // leases of other names are separate
  }));

  it('lease: a renewal moves the expiry others see; release frees the lease at once, for a larger token', withDestination(async (d) => {
    const first = await d.lease!('one.lease', FIRST);
    const before = expiryIn(await rejectsWithCode(d.lease!('one.lease', LONG), 'LEASE_HELD'));
    await sleep(5); // the expiry is kept to the millisecond: let the clock move
    await first.renew();
    const after = expiryIn(await rejectsWithCode(d.lease!('one.lease', LONG), 'LEASE_HELD'));
    assert.ok(after > before, 'renewed from now');
    await first.release();
    const second = await d.lease!('one.lease', LONG);
    assert.ok(second.token > first.token, 'fencing tokens only grow');
    await rejectsWithCode(first.check(), 'LEASE_LOST', /long-lived holder/);
    await first.release(); // a holder releasing again does not touch the new holder's lease
    await rejectsWithCode(d.lease!('one.lease', SHORT), 'LEASE_HELD', /long-lived holder/);
    await second.release();
  }));

  it('lease: of takers racing for a free lease, exactly one gets it', withDestination(async (d) => {
    const outcomes = await Promise.allSettled(Array.from({ length: 4 }, (_, i) => d.lease!('raced.lease', { ttlMs: 600_000, holder: `racer ${i}` })));
    const winners = outcomes.filter((o) => o.status === 'fulfilled');
    assert.equal(winners.length, 1, 'one holder');
    for (const outcome of outcomes) {
      if (outcome.status === 'rejected') assert.equal((outcome.reason as BackupError).code, 'LEASE_HELD', String(outcome.reason));
    }
    await (winners[0] as PromiseFulfilledResult<Lease>).value.check();
  }));

  it('lease: an expired lease goes to the next taker with a larger token; the old holder cannot renew, pass a check or release it', withDestination(async (d) => {
    const old = await d.lease!('one.lease', SHORT);
    const next = await takeWhenFree(d, 'one.lease', { ttlMs: 600_000, holder: 'next holder' });
    assert.ok(next.token > old.token);
    await rejectsWithCode(old.check(), 'LEASE_LOST');
    await rejectsWithCode(old.renew(), 'LEASE_LOST', /next holder/);
    await old.release();
    await next.check();
    await rejectsWithCode(d.lease!('one.lease', SHORT), 'LEASE_HELD', /next holder/);
  }));

  it('lease: of takers racing for an expired lease, exactly one gets it, with a larger token', withDestination(async (d) => {
    const old = await d.lease!('raced.lease', SHORT);
    while (await old.check().then(() => true, () => false)) await sleep(50); // until its ttl ran out
    const outcomes = await Promise.allSettled(Array.from({ length: 4 }, (_, i) => d.lease!('raced.lease', { ttlMs: 600_000, holder: `racer ${i}` })));
    const winners = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    assert.equal(winners.length, 1, 'one holder');
    for (const outcome of outcomes) {
      if (outcome.status === 'rejected') assert.equal((outcome.reason as BackupError).code, 'LEASE_HELD', String(outcome.reason));
    }
    assert.ok((winners[0] as Lease).token > old.token);
    await (winners[0] as Lease).check();
  }));

  it('lease: a holder whose ttl ran out fails its check even before anyone takes the lease', withDestination(async (d) => {
    const lease = await d.lease!('one.lease', SHORT);
    await lease.check();
    // Waits for the outcome, however long the ttl takes on this machine.
    for (;;) {
      const failure = await lease.check().then(() => undefined, (error: unknown) => error);
      if (failure !== undefined) {
        assert.equal((failure as BackupError).code, 'LEASE_LOST', String(failure));
        break;
      }
      await sleep(50);
    }
  }));

  it('lease: a backup with a lease writes nothing while another holds it, and releases its own when done', withDestination(async (d) => {
    await withFolder(async (dir) => {
      const database = new Database({ sources: [files({ name: 'f', dir })] });
      const other = await d.lease!(BACKUP_LEASE, LONG);
      const before = await objectNames(d);
      await rejectsWithCode(database.startBackup({ to: d, lease: { ttlMs: 2000 } }).done, 'LEASE_HELD', /long-lived holder/);
      assert.deepEqual(await objectNames(d), before, 'nothing written, not even a name claim');
      await other.release();
      const { name } = await database.startBackup({ to: d, lease: { ttlMs: 2000 } }).done;
      assert.deepEqual((await listBackups(d)).map((b) => [b.name, b.trust]), [[name, 'trusted']]);
      const after = await d.lease!(BACKUP_LEASE, SHORT); // free at once: the backup released it
      assert.ok(after.token > other.token + 1, 'a token past the backup\'s own');
      await after.release();
    });
  }));
}
