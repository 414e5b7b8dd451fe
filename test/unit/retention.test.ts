/**
 * Retention policies and prune on a memory destination against a fixed clock: which backups each
 * rule keeps, what untrustworthy sidecars change, which leftovers go.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import { FIRST_HEADER_RANGE_BYTES, HEADER_RANGE_BYTES, readArchiveHeader } from '../../src/archive/peek.js';
import { listBackups } from '../../src/listing.js';
import { memory } from '../../src/destinations/memory/index.js';
import { prune, type PruneResult, type RetentionPolicy } from '../../src/retention.js';
import type { Destination, ReadRange } from '../../src/types.js';
import { chainArchive } from '../helpers/craft.js';
import { put } from '../helpers/put.js';
import { BACKUPS, NOW, destinationWithBackups, letters } from '../helpers/backups.js';
import { UNTRUSTWORTHY_SIDECARS, sidecarFor } from '../helpers/sidecar.js';

describe('retention against a fixed clock', () => {
  const cases: Array<[string, RetentionPolicy, string]> = [
    ['keepLast', { keepLast: 3 }, 'ABC'],
    ['keepDaily', { keepDaily: 3 }, 'ACD'],
    ['keepWeekly', { keepWeekly: 3 }, 'AFH'],
    ['keepMonthly', { keepMonthly: 3 }, 'AHJ'],
    ['maxAge', { maxAge: '3d' }, 'ABCD'],
    ['maxAge in milliseconds', { maxAge: 36 * 3_600_000 }, 'ABC'],
    ['rules combined', { keepLast: 1, keepMonthly: 12 }, 'AHJK'],
    ['the newest backup, whatever the rules say', { maxAge: '1h' }, 'A'],
    ['a year of monthly, a month of weekly and a week of daily', { keepDaily: 7, keepWeekly: 4, keepMonthly: 12 }, 'ACDEFGHIJK'],
  ];
  for (const [label, policy, expected] of cases) {
    it(`keeps exactly the expected backups: ${label}`, async () => {
      const destination = await destinationWithBackups();
      const result = await prune(destination, policy, { now: NOW });
      assert.equal(letters(result.kept.map((b) => b.name)), expected);
      assert.equal(letters((await listBackups(destination)).map((b) => b.name)), expected);
      assert.equal(result.kept.length + result.removed.length, Object.keys(BACKUPS).length);
      const remaining = [];
      for await (const object of destination.list()) remaining.push(object.name);
      assert.equal(remaining.length, 2 * expected.length, 'each deleted archive took its sidecar with it');
    });
  }

  it('deletes nothing on a dry run, and says what it would delete', async () => {
    const destination = await destinationWithBackups();
    const result = await prune(destination, { keepLast: 2 }, { dryRun: true, now: NOW });
    assert.equal(result.dryRun, true);
    assert.equal(letters(result.removed.map((b) => b.name)), 'CDEFGHIJK');
    assert.equal((await listBackups(destination)).length, Object.keys(BACKUPS).length);
    assert.deepEqual(result.kept.find((b) => b.name === BACKUPS.A)?.reasons, ['newest', 'last']);
  });

  it('refuses a policy that would keep nothing or is malformed', async () => {
    const destination = await destinationWithBackups();
    for (const policy of [{}, { keepLast: -1 }, { keepDaily: 1.5 }, { maxAge: 'a week' }, { keepLast: 0 }] as RetentionPolicy[]) {
      await assert.rejects(prune(destination, policy), { code: 'INVALID_OPTIONS' }, JSON.stringify(policy));
    }
    assert.equal((await listBackups(destination)).length, Object.keys(BACKUPS).length);
  });
});

describe('retention against sidecars it cannot trust', () => {
  for (const { label, code, text } of UNTRUSTWORTHY_SIDECARS) {
    it(`never deletes a backup whose sidecar is ${label}, and lists it with ${code}`, async () => {
      // B is 10 hours old, K a year: one that only a lying sidecar makes look old, one that is.
      const sidecarOf = (letter: string) => text(BACKUPS[letter] as string, Buffer.from(BACKUPS[letter] as string), BACKUPS.A as string);
      const destination = await destinationWithBackups({ B: sidecarOf('B'), K: sidecarOf('K') });
      const listed = await listBackups(destination);
      for (const backup of listed) {
        const damaged = backup.name === BACKUPS.B || backup.name === BACKUPS.K;
        assert.equal(backup.trust, damaged ? 'unknown' : 'trusted', backup.name);
        assert.equal(backup.problem?.code, damaged ? code : undefined, `${backup.name}: ${backup.problem?.message}`);
        assert.equal(backup.createdAt.toISOString().slice(0, 19).replace(/[-:T]/g, ''), backup.name.slice(0, 15).replace('-', ''), 'the time is the name\'s');
        assert.ok(Array.isArray(backup.sources));
        if (damaged) assert.deepEqual([backup.sha256, backup.signedBy, backup.sources], [undefined, undefined, []], 'nothing of an untrusted sidecar is used');
      }
      for (const policy of [{ maxAge: '30d' }, { keepLast: 1 }, { keepDaily: 1 }, { keepMonthly: 1 }] as RetentionPolicy[]) {
        const planned = await prune(destination, policy, { dryRun: true, now: NOW });
        assert.deepEqual(planned.removed.filter((b) => b.trust !== 'trusted'), [], `${JSON.stringify(policy)} plans to delete no unknown backup`);
        assert.deepEqual(
          planned.kept.filter((b) => b.trust === 'unknown').map((b) => [letters([b.name]), b.reasons]),
          [['B', ['unknown']], ['K', ['unknown']]],
        );
      }
      const pruned = await prune(destination, { maxAge: '30d' }, { now: NOW });
      assert.equal(letters(pruned.removed.map((b) => b.name)), 'IJ');
      assert.equal(letters((await listBackups(destination)).map((b) => b.name)), 'ABCDEFGHK');
    });
  }

  it('fills keepLast with trusted backups: unknown ones are kept besides, never instead', async () => {
    const destination = await destinationWithBackups({ A: undefined, B: '{"name":' });
    const result = await prune(destination, { keepLast: 2 }, { now: NOW });
    // These archives are no tar files: what A and B build on is unknown, so C, the full before them, stays too.
    assert.deepEqual(
      result.kept.map((b) => [letters([b.name]), b.reasons]),
      [['A', ['unknown']], ['B', ['unknown', 'unknown-chain']], ['C', ['newest', 'last', 'unknown-chain']], ['D', ['last']]],
    );
    assert.deepEqual(result.warnings.map((w) => [letters([w.backup]), letters(w.kept)]), [['A', 'BC'], ['B', 'C']]);
    assert.equal(letters(result.removed.map((b) => b.name)), 'EFGHIJK');
  });

  it('ignores objects named like archives whose timestamp is no real time', async () => {
    const destination = await destinationWithBackups();
    for (const name of ['20261399-120000.tar.gz', '20260231-120000.tar.gz', '20261121-256199.tar.gz']) await put(destination, name, Buffer.from(name));
    assert.equal(letters((await listBackups(destination)).map((b) => b.name)), 'ABCDEFGHIJK');
    const result = await prune(destination, { keepLast: 1 }, { now: NOW });
    assert.equal(result.kept.length + result.removed.length, Object.keys(BACKUPS).length);
  });
});

describe('prune removes the claims interrupted backups left behind', () => {
  it('removes the name claims of killed backups a day old, never a recent one; a dry run only lists them', async () => {
    const destination = await destinationWithBackups();
    const stale = '20261120-115959.claim';
    const recent = '20261121-115900_01.claim';
    for (const claim of [stale, recent]) await put(destination, claim, Buffer.from('{"host":"gone","pid":1}\n'));
    const names = async () => {
      const listed: string[] = [];
      for await (const { name } of destination.list()) listed.push(name);
      return listed;
    };
    assert.deepEqual((await prune(destination, { keepLast: 20 }, { now: NOW, dryRun: true })).leftovers, [stale]);
    assert.ok((await names()).includes(stale), 'a dry run removes nothing');
    assert.deepEqual((await prune(destination, { keepLast: 20 }, { now: NOW })).leftovers, [stale]);
    assert.ok(!(await names()).includes(stale));
    assert.ok((await names()).includes(recent), 'a claim a running backup may hold stays');
  });

  it('reports no leftovers for a destination that leaves none', async () => {
    const result = await prune(await destinationWithBackups(), { keepLast: 1 }, { now: NOW });
    assert.deepEqual(result.leftovers, []);
  });
});

describe('retention over chains of incremental backups', () => {
  /** Two chains, newest first: letter -> [archive name, its previous and its base, none for a full]. */
  const CHAIN: Record<string, [string, string?, string?]> = {
    I4: ['20261111-000000.tar.gz', 'F2', 'F2'], // Wed, ISO week 46
    F2: ['20261110-000000.tar.gz'],
    I3: ['20261109-000000.tar.gz', 'I2', 'F1'], // Mon, week 46
    I2: ['20261108-000000.tar.gz', 'I1', 'F1'], // Sun, week 45
    I1: ['20261102-000000.tar.gz', 'F1', 'F1'], // Mon, week 45
    F1: ['20261101-000000.tar.gz'], // Sun, week 44
  };
  const nameOf = (letter: string) => (CHAIN[letter] as [string])[0];
  const letterOf = (name: string) => Object.keys(CHAIN).find((letter) => nameOf(letter) === name);

  /** The chains on a memory destination that records what is removed, in order. */
  async function chains(): Promise<{ destination: Destination; removals: string[] }> {
    const destination = memory();
    for (const [name, previous, base] of Object.values(CHAIN)) {
      const bytes = Buffer.from(name);
      const chain = previous === undefined || base === undefined ? { type: 'full' } : { type: 'incremental', base: nameOf(base), previous: nameOf(previous) };
      await put(destination, name, bytes);
      await put(destination, `${name}.json`, Buffer.from(JSON.stringify(sidecarFor(name, bytes, chain))));
    }
    const removals: string[] = [];
    const recording: Destination = {
      ...destination,
      remove: async (name) => {
        removals.push(name);
        await destination.remove(name);
      },
    };
    return { destination: recording, removals };
  }

  const cases: Array<[string, RetentionPolicy, string, string]> = [
    ['a kept incremental keeps its chain back to the full', { keepLast: 1 }, 'I4 F2', 'I3 I2 I1 F1'],
    ['restore points are counted alike, full or incremental', { keepLast: 3 }, 'I4 F2 I3 I2 I1 F1', ''],
    ['only the tail of a chain goes when an earlier incremental is kept', { keepWeekly: 2 }, 'I4 F2 I2 I1 F1', 'I3'],
    ['maxAge keeps the chains of the young backups', { maxAge: '11d' }, 'I4 F2', 'I3 I2 I1 F1'],
  ];
  for (const [label, policy, kept, removed] of cases) {
    it(label, async () => {
      const { destination, removals } = await chains();
      const result = await prune(destination, policy, { now: NOW });
      assert.equal(result.kept.map((b) => letterOf(b.name)).join(' '), kept);
      assert.equal(result.removed.map((b) => letterOf(b.name)).join(' '), removed);
      for (const backup of result.kept) {
        if (backup.previous !== undefined) assert.ok(result.kept.some((b) => b.name === backup.previous), `${letterOf(backup.name)} keeps what it builds on`);
      }
      // Newest first, archive then sidecar and state: a prune cut short never strands an incremental.
      assert.deepEqual(removals, result.removed.flatMap((b) => [b.name, `${b.name}.json`, `${b.name}.state`]));
      assert.equal((await listBackups(destination)).map((b) => letterOf(b.name)).join(' '), kept);
    });
  }
});

describe('retention keeps what unknown backups build on', () => {
  /** Newest first: letter -> [archive name, its previous for an incremental]. I2's sidecar is the one a test takes away. */
  const CHAIN: Record<string, [string, string?]> = {
    I4: ['20261111-000000.tar.gz', 'F2'],
    F2: ['20261110-000000.tar.gz'],
    I3: ['20261109-000000.tar.gz', 'I2'],
    I2: ['20261108-000000.tar.gz', 'I1'],
    I1: ['20261102-000000.tar.gz', 'F1'],
    F1: ['20261101-000000.tar.gz'],
    F0: ['20261025-000000.tar.gz'],
  };
  const nameOf = (letter: string) => (CHAIN[letter] as [string])[0];
  const letterOf = (name: string) => Object.keys(CHAIN).find((letter) => nameOf(letter) === name) ?? name;
  /** F1's chain: what an incremental's header names as its base. */
  const baseOf = (letter: string) => (['I1', 'I2', 'I3'].includes(letter) ? 'F1' : 'F2');

  const chainOf = (letter: string) => {
    const previous = (CHAIN[letter] as [string, string?])[1];
    return previous === undefined ? { type: 'full' } : { type: 'incremental', base: nameOf(baseOf(letter)), previous: nameOf(previous) };
  };
  const archiveOf = (letter: string) => chainArchive(nameOf(letter), chainOf(letter));

  /**
   * The chains on a memory destination, each archive a real (small) one; `sidecars` says which
   * sidecars are missing (`undefined`) or damaged (text), `archives` which archives hold other bytes.
   * Records every read of an archive with its range.
   */
  async function chains(sidecars: Record<string, string | undefined> = {}, archives: Record<string, Buffer> = {}) {
    const destination = memory();
    for (const letter of Object.keys(CHAIN)) {
      const bytes = archives[letter] ?? (await archiveOf(letter));
      await put(destination, nameOf(letter), bytes);
      const sidecar = letter in sidecars ? sidecars[letter] : JSON.stringify(sidecarFor(nameOf(letter), bytes, chainOf(letter)));
      if (sidecar !== undefined) await put(destination, `${nameOf(letter)}.json`, Buffer.from(sidecar));
    }
    const reads: Array<[string, ReadRange | undefined]> = [];
    const recording: Destination = {
      ...destination,
      open: async (name, range) => {
        if (!name.endsWith('.json')) reads.push([letterOf(name), range]);
        return destination.open(name, range);
      },
    };
    return { destination: recording, reads };
  }

  const summary = (result: PruneResult) => ({
    kept: result.kept.map((b) => `${letterOf(b.name)}:${b.reasons.join('+')}`).join(' '),
    removed: result.removed.map((b) => letterOf(b.name)).join(' '),
    warnings: result.warnings.map((w) => `${letterOf(w.backup)}:${w.kept.map(letterOf).join('+')}`),
  });

  it('an unknown incremental whose sidecar is missing keeps its chain, read from its header and that of an unknown predecessor', async () => {
    // I1's sidecar is damaged too: its own header says what it builds on.
    const { destination, reads } = await chains({ I2: undefined, I1: '{"name":' });
    const result = await prune(destination, { keepLast: 1 }, { now: NOW });
    assert.deepEqual(summary(result), {
      kept: 'I4:newest+last F2:chain I2:unknown I1:unknown+chain F1:chain',
      removed: 'I3 F0',
      warnings: [],
    });
    assert.deepEqual(reads.map(([letter]) => letter).sort(), ['I1', 'I2'], 'only the unknown archives are read');
    for (const [letter, range] of reads) assert.deepEqual(range, { offset: 0, length: FIRST_HEADER_RANGE_BYTES }, `${letter} is read from its start, never whole`);
    assert.equal((await listBackups(destination)).map((b) => letterOf(b.name)).join(' '), 'I4 F2 I2 I1 F1');
  });

  it('a readable unknown full keeps nothing besides itself', async () => {
    const { destination } = await chains({ F2: undefined });
    const result = await prune(destination, { keepLast: 1 }, { now: NOW });
    assert.deepEqual(summary(result), { kept: 'I4:newest+last F2:unknown+chain', removed: 'I3 I2 I1 F1 F0', warnings: [] });
  });

  it('an encrypted unknown keeps every backup before it back to the newest full, and warns', async () => {
    const { destination, reads } = await chains();
    const encrypted = '20261108-120000.tar.gz.gpg'; // between I2 and I3
    await put(destination, encrypted, randomBytes(4096));
    const result = await prune(destination, { keepLast: 1 }, { now: NOW });
    assert.deepEqual(summary(result), {
      kept: `I4:newest+last F2:chain ${encrypted}:unknown I2:unknown-chain I1:unknown-chain+chain F1:unknown-chain+chain`,
      removed: 'I3 F0',
      warnings: [`${encrypted}:I2+I1+F1`],
    });
    assert.match(result.warnings[0]?.message ?? '', /encrypted.*back to the full 20261101-000000\.tar\.gz/);
    assert.deepEqual(reads, [], 'an encrypted header cannot be read: nothing is downloaded');
  });

  it('a corrupt or truncated unknown archive, or one whose header claims a later predecessor, keeps back to the newest full', async () => {
    const whole = await archiveOf('I2');
    const claimsLater = await chainArchive(nameOf('I2'), { type: 'incremental', base: nameOf('F2'), previous: nameOf('I3') });
    const otherName = await chainArchive(nameOf('I3'));
    for (const [label, bytes, why] of [
      ['garbage', Buffer.alloc(2048, 'not an archive '), /not a tar file/],
      ['cut inside its header', whole.subarray(0, 40), /header cannot be read/],
      ['a header naming a later backup as its previous', claimsLater, /names no earlier backups/],
      ["another archive's header", otherName, /describes "20261109-000000\.tar\.gz"/],
    ] as const) {
      const { destination } = await chains({ I2: undefined }, { I2: bytes });
      const result = await prune(destination, { keepLast: 1 }, { now: NOW });
      assert.deepEqual(summary(result), { kept: 'I4:newest+last F2:chain I2:unknown I1:unknown-chain F1:unknown-chain+chain', removed: 'I3 F0', warnings: ['I2:I1+F1'] }, label);
      assert.match(result.warnings[0]?.message ?? '', why, label);
    }
  });

  it('a dry run reports what the real prune then does, deleting nothing', async () => {
    for (const [sidecars, extra] of [[{ I2: undefined, I1: '{"name":' }, undefined], [{}, '20261108-120000.tar.gz.gpg']] as const) {
      const { destination } = await chains(sidecars);
      if (extra) await put(destination, extra, randomBytes(100));
      const before = (await listBackups(destination)).map((b) => b.name);
      const planned = await prune(destination, { keepLast: 1 }, { now: NOW, dryRun: true });
      assert.deepEqual((await listBackups(destination)).map((b) => b.name), before);
      const done = await prune(destination, { keepLast: 1 }, { now: NOW });
      assert.deepEqual(summary(planned), summary(done));
      assert.deepEqual(planned.warnings, done.warnings);
    }
  });

  it('reads a header from the start of a large gzip, zstd or uncompressed archive: one short ranged read, a longer one for a long header', async () => {
    const name = nameOf('I2');
    // Node 24 has zstd; the @types/node in use does not know it yet.
    const { zstdCompressSync } = zlib as unknown as { zstdCompressSync: (bytes: Buffer) => Buffer };
    // A header of many sources is longer than the first read; after it, a body no compression shrinks.
    for (const [padding, lengths] of [[0, [FIRST_HEADER_RANGE_BYTES]], [4 * FIRST_HEADER_RANGE_BYTES, [FIRST_HEADER_RANGE_BYTES, HEADER_RANGE_BYTES]]] as const) {
      const chain = { ...chainOf('I2'), padding: randomBytes(padding / 2).toString('hex') };
      const tarBytes = zlib.gunzipSync(await chainArchive(name, chain, randomBytes(3 * HEADER_RANGE_BYTES)));
      for (const [label, bytes] of [['gzip', zlib.gzipSync(tarBytes)], ['zstd', zstdCompressSync(tarBytes)], ['none', tarBytes]] as const) {
        const destination = memory();
        await put(destination, name, bytes);
        const ranges: Array<ReadRange | undefined> = [];
        const recording: Destination = { ...destination, open: async (object, range) => (ranges.push(range), destination.open(object, range)) };
        const read = await readArchiveHeader(recording, name, bytes.length);
        assert.deepEqual([read.name, read.type, read.previous, read.base], [name, 'incremental', nameOf('I1'), nameOf('F1')], label);
        assert.deepEqual(ranges, lengths.map((length) => ({ offset: 0, length })), `${label}, a header padded by ${padding}: only its start is read`);
      }
    }
  });
});
