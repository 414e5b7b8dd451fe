/**
 * The contract every destination keeps. An adapter's test file calls `testDestination` once and
 * adds its own extras. Only `describe`/`it` from node:test are used, plus `assert`; listing and
 * prune run on each destination, as they read what it lists.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { describe, it } from 'node:test';
import { Database, files, listBackups, prune, type Destination, type Upload } from '../../src/index.js';
import { rejectsWithCode } from '../helpers/errors.js';
import { failingAfter } from '../helpers/faulty.js';
import { put } from '../helpers/put.js';
import { sidecarFor } from '../helpers/sidecar.js';
import { testLease } from './lease.js';

export interface DestinationHarness {
  destination: Destination;
  cleanup(): Promise<void>;
}

async function names(destination: Destination, prefix?: string): Promise<string[]> {
  const out: string[] = [];
  for await (const object of destination.list(prefix)) out.push(object.name);
  return out.sort();
}

export interface ConformanceOptions {
  /**
   * The server reports no real start time for unfinished uploads (moto: always 2010-11-10), so
   * that every one of them looks abandoned: age-based leftover rules cannot be checked against it.
   */
  fakeUploadStartTimes?: boolean;
  /** It keeps leases (`Destination.lease`): the lease cases run; without, `startBackup({ lease })` must refuse it. */
  lease?: boolean;
}

export function testDestination(label: string, make: () => Promise<DestinationHarness>, options: ConformanceOptions = {}): void {
  describe(`destination conformance: ${label}`, () => {
    const withDestination = (fn: (d: Destination) => Promise<void>) => async () => {
      const { destination, cleanup } = await make();
      try {
        await fn(destination);
      } finally {
        await cleanup();
      }
    };

    it('describes itself', withDestination(async (d) => {
      assert.equal(typeof d.kind, 'string');
      assert.ok(d.description.length > 0);
      assert.equal(typeof d.capabilities.deferredCommit, 'boolean');
    }));

    it('round-trips an object of several MiB byte for byte', withDestination(async (d) => {
      const bytes = randomBytes(5 * 1024 * 1024 + 17);
      await put(d, 'a.tar.gz', bytes);
      const read = await buffer(await d.open('a.tar.gz'));
      assert.ok(read.equals(bytes));
      const [listed] = await (async () => { const all = []; for await (const o of d.list()) all.push(o); return all; })();
      assert.equal(listed?.name, 'a.tar.gz');
      assert.equal(listed?.size, bytes.length);
      assert.ok(listed?.modifiedAt instanceof Date);
    }));

    it('keeps an object invisible until it is complete, or until committed if it can', withDestination(async (d) => {
      const upload = await d.create('pending.tar.gz');
      upload.stream.write(randomBytes(1000));
      assert.deepEqual(await names(d), [], 'not while it is being written');
      const finished = once(upload.stream, 'finish');
      upload.stream.end();
      await finished;
      if (d.capabilities.deferredCommit) {
        assert.deepEqual(await names(d), []);
        await rejectsWithCode(d.open('pending.tar.gz'), 'NOT_FOUND');
      }
      await upload.commit();
      assert.deepEqual(await names(d), ['pending.tar.gz']);
    }));

    it('leaves nothing behind when an upload is aborted, midway or after it ended', withDestination(async (d) => {
      const midway = await d.create('midway.tar.gz');
      midway.stream.write(randomBytes(1000));
      await midway.abort();
      const upload = await put(d, 'aborted.tar.gz', randomBytes(1000), false);
      await upload.abort();
      assert.deepEqual(await names(d), []);
      await put(d, 'aborted.tar.gz', Buffer.from('second try'));
      assert.equal((await buffer(await d.open('aborted.tar.gz'))).toString(), 'second try');
    }));

    it('never replaces a committed object: a second commit of one name is ALREADY_EXISTS', withDestination(async (d) => {
      const first = randomBytes(1000);
      await put(d, 'taken.tar.gz', first);
      await rejectsWithCode(put(d, 'taken.tar.gz', randomBytes(2000)), 'ALREADY_EXISTS');
      assert.ok((await buffer(await d.open('taken.tar.gz'))).equals(first), 'the first object is intact');
      // Two writers racing: both stream, the first commit wins and the second is refused.
      const racers = [randomBytes(3000), randomBytes(4000)];
      const uploads = await Promise.all(racers.map((bytes) => put(d, 'raced.tar.gz', bytes, false).catch((error: unknown) => error)));
      const outcomes = await Promise.allSettled(uploads.map((u) => (u instanceof Error ? Promise.reject(u) : (u as Upload).commit())));
      const winners = outcomes.flatMap((o, i) => (o.status === 'fulfilled' ? [i] : []));
      assert.equal(winners.length, 1, 'exactly one writer commits');
      const loser = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
      assert.equal((loser?.reason as { code?: string }).code, 'ALREADY_EXISTS');
      await Promise.all(uploads.map((u, i) => (u instanceof Error || winners.includes(i) ? undefined : (u as Upload).abort())));
      assert.ok((await buffer(await d.open('raced.tar.gz'))).equals(racers[winners[0] as number] as Buffer), 'the winner is intact');
      assert.deepEqual(await names(d), ['raced.tar.gz', 'taken.tar.gz'], 'nothing else is left');
    }));

    it('reads a byte range of an object: within it, running past its end, beyond it', withDestination(async (d) => {
      const bytes = randomBytes(3 * 1024 * 1024 + 17);
      await put(d, 'ranged.tar.gz', bytes);
      const read = async (range: { offset?: number; length?: number }) => buffer(await d.open('ranged.tar.gz', range));
      const size = bytes.length;
      assert.ok((await read({ offset: 0, length: 10 })).equals(bytes.subarray(0, 10)));
      assert.ok((await read({ offset: 1_000_000, length: 1_500_000 })).equals(bytes.subarray(1_000_000, 2_500_000)), 'a range spanning read chunks');
      assert.ok((await read({ offset: size - 5 })).equals(bytes.subarray(size - 5)), 'to the end');
      assert.ok((await read({ offset: size - 5, length: 100 })).equals(bytes.subarray(size - 5)), 'running past the end: the bytes there are');
      assert.equal((await read({ offset: size + 10 })).length, 0, 'beyond the end: no bytes');
      assert.ok((await read({})).equals(bytes), 'an empty range is the whole object');
      for (const range of [{ offset: -1 }, { offset: 1.5 }, { length: 0 }, { offset: 0, length: -3 }]) {
        await rejectsWithCode(d.open('ranged.tar.gz', range), 'INVALID_OPTIONS');
      }
      await rejectsWithCode(d.open('missing.tar.gz', { offset: 10, length: 10 }), 'NOT_FOUND');
    }));

    it('lists by prefix', withDestination(async (d) => {
      await put(d, '20260101-000000.tar.gz', Buffer.from('1'));
      await put(d, '20260102-000000.tar.gz', Buffer.from('2'));
      await put(d, '20260102-000000.tar.gz.json', Buffer.from('{}'));
      assert.deepEqual(await names(d, '20260102'), ['20260102-000000.tar.gz', '20260102-000000.tar.gz.json']);
      assert.deepEqual(await names(d, 'nothing'), []);
    }));

    it('removes objects and reports missing ones as NOT_FOUND', withDestination(async (d) => {
      await put(d, 'gone.tar.gz', Buffer.from('x'));
      await d.remove('gone.tar.gz');
      assert.deepEqual(await names(d), []);
      await rejectsWithCode(d.remove('gone.tar.gz'), 'NOT_FOUND');
      await rejectsWithCode(d.open('never.tar.gz'), 'NOT_FOUND');
    }));

    it('lists sizes its sidecars agree with: a backup is trusted, one with another\'s sidecar unknown and kept by prune', withDestination(async (d) => {
      const [older, newer] = ['20260101-000000.tar.gz', '20260102-000000.tar.gz'];
      const bytes = randomBytes(70_000);
      for (const name of [older, newer]) await put(d, name, bytes);
      await put(d, `${newer}.json`, Buffer.from(JSON.stringify(sidecarFor(newer, bytes))));
      await put(d, `${older}.json`, Buffer.from(JSON.stringify(sidecarFor(newer, bytes))));
      assert.deepEqual((await listBackups(d)).map((b) => [b.name, b.trust, b.size, b.problem?.code]), [[newer, 'trusted', bytes.length, undefined], [older, 'unknown', bytes.length, 'SIDECAR_MISMATCH']]);
      const result = await prune(d, { keepLast: 1 });
      assert.deepEqual(result.removed, []);
      assert.deepEqual(await names(d), [older, `${older}.json`, newer, `${newer}.json`]);
    }));

    const fakeTimes = options.fakeUploadStartTimes ? 'the server fakes the start time of unfinished uploads' : false;
    it('never names an upload still being written as a leftover, nor removes it', { skip: fakeTimes }, withDestination(async (d) => {
      const live = await put(d, 'live.tar.gz', randomBytes(6 * 1024 * 1024), false); // past one S3 part: a multipart upload exists
      assert.deepEqual((await d.listLeftovers?.()) ?? [], []);
      assert.deepEqual((await d.removeLeftovers?.()) ?? [], []);
      assert.deepEqual((await prune(d, { keepLast: 1 }, { dryRun: true })).leftovers, []);
      await live.commit();
      assert.equal((await buffer(await d.open('live.tar.gz'))).length, 6 * 1024 * 1024, 'the upload went on unharmed');
    }));

    it('a backup whose upload stream errors midway leaves nothing listed, and no leftover after the next backup', withDestination(async (d) => {
      const dir = await mkdtemp(join(tmpdir(), 'backupkit-conformance-upload-fails-'));
      try {
        // Random bytes do not compress: the archive is past one S3 part (5 MiB) when the stream breaks.
        await writeFile(join(dir, 'blob'), randomBytes(8 * 1024 * 1024));
        const database = new Database({ sources: [files({ name: 'blobs', dir })] });
        const failing = failingAfter(d, 6 * 1024 * 1024);
        await rejectsWithCode(database.startBackup({ to: failing }).done, 'DESTINATION_FAILED', /injected failure/);
        assert.deepEqual(await names(d), [], 'neither a partial archive nor a sidecar nor a claim');
        const { name } = await database.startBackup({ to: d }).done;
        assert.deepEqual(await names(d), [name, `${name}.json`, `${name}.state`]);
        assert.deepEqual((await d.listLeftovers?.()) ?? [], [], 'the broken upload left nothing for prune to find');
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }));

    it('refuses names that could escape its namespace', withDestination(async (d) => {
      for (const bad of ['../x', 'a/b', '.hidden', '', 'a\\b']) await rejectsWithCode(d.create(bad), 'INVALID_OPTIONS');
    }));

    testLease(withDestination, options.lease ?? false);
  });
}
