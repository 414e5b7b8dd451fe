/**
 * The contract every source and its restorer keep. An adapter's test file calls `testSource` once
 * and adds its own extras.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dirname } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BackupError, Database, memory, type ArchivedEntry, type BackupOperation, type BackupResult, type Destination, type Entry, type RestoreEntry, type RestoreSink, type RestoreTarget, type ScratchServers, type Snapshot, type Source, type SourceKind, type SourceMode } from '../../src/index.js';
import { tellArchived } from '../helpers/archived.js';
import { rejectsWithCode } from '../helpers/errors.js';
import { failingAfter, faultySource, holdingAfter, readsStrikingAfter, withBody } from '../helpers/faulty.js';
import { assertNoThreadLeft, workerThreads } from '../helpers/threads.js';

/** One source kind under test, typed by its restore target. */
export interface SourceHarness<Target> {
  /** A source over data the harness created. */
  source: Source;
  /** Its kind, as the registry holds it: the restorer and how targets are described. */
  kind: SourceKind<Target>;
  /** A target that does not exist yet, inside a folder of its own. */
  freshTarget(): Promise<Target>;
  /** Creates a target that exists but is empty (an empty folder, an empty file). */
  createEmpty(target: Target): Promise<void>;
  /** Puts data into a target so that it counts as not empty. */
  fill(target: Target): Promise<void>;
  /** A comparable description of the source's data, or of a restored target. */
  describe(target?: Target): Promise<unknown>;
  /** What exists beside a target (its folder's listing, the server's databases): a restore that fails must not change it. */
  surroundings(target: Target): Promise<unknown>;
  /** The snapshot's estimate is exact (a file's size), not a catalog's guess (a database's pages). */
  exactEstimate: boolean;
  /**
   * Changes the source's data, otherwise at each call, leaving something the call before changed
   * as it is (so that a chain's newest incremental needs the one before). Given exactly when the
   * source's snapshots keep a state to build incrementals on; its chain cases then run.
   */
  change?(): Promise<void>;
  /** Servers for throwaway targets, by kind, as `verifyBackup` passes them (`{ postgres: url }`). */
  servers?: ScratchServers;
  /**
   * A source of the same kind big enough (several MiB, many entries where the kind has them) that
   * its threads wait on backpressure when a fault strikes; the fault cases use `source` without it.
   */
  bulky?(): Promise<Source>;
  cleanup(): Promise<void>;
}

const noWarnings = { signal: new AbortController().signal, archive: '20261201-000000.tar.gz', warn: (w: unknown) => assert.fail(`unexpected warning ${JSON.stringify(w)}`) };

async function collect(snapshot: Snapshot): Promise<Array<{ entry: Entry; body: Buffer | undefined }>> {
  const out = [];
  for await (const entry of snapshot.entries()) {
    const chunks: Uint8Array[] = [];
    if (entry.body) for await (const chunk of entry.body()) chunks.push(chunk);
    const body = entry.body ? Buffer.concat(chunks) : undefined;
    tellArchived(entry, body);
    out.push({ entry, body });
  }
  return out;
}

/** An entry as the restore engine hands it to a sink. */
function restoreEntryOf(entry: Entry, body: Buffer | undefined): RestoreEntry {
  return {
    path: entry.path,
    type: entry.type,
    mode: entry.mode,
    mtime: entry.mtime,
    size: entry.size,
    ...(entry.linkTarget === undefined ? {} : { linkTarget: entry.linkTarget }),
    ...(entry.meta ? { meta: true as const } : {}),
    body: (async function* () {
      if (body) yield body;
    })(),
  };
}

/** Streams a snapshot's entries into a restorer's sink, as the engine does; returns the sink and the manifest's view of them. */
async function writeSnapshot<Target>(harness: SourceHarness<Target>, parsed: unknown): Promise<{ sink: RestoreSink; archived: ArchivedEntry[] }> {
  await harness.kind.restorer.check(parsed);
  const snapshot = await harness.source.open(noWarnings);
  try {
    const sink = await harness.kind.restorer.begin(parsed, new AbortController().signal);
    const archived: ArchivedEntry[] = [];
    for (const { entry, body } of await collect(snapshot)) {
      await sink.write(restoreEntryOf(entry, body));
      archived.push({ path: entry.path, type: entry.type, size: body?.length ?? 0, sha256: createHash('sha256').update(body ?? Buffer.alloc(0)).digest('hex') });
    }
    return { sink, archived };
  } finally {
    await snapshot.close();
  }
}

/** Restores a snapshot's entries through the restorer, as the engine does, up to `until`. */
async function restoreInto<Target>(harness: SourceHarness<Target>, target: Target, until: 'prepare' | 'commit' | 'abort' | 'abort-after-commit'): Promise<void> {
  const { sink } = await writeSnapshot(harness, harness.kind.restorer.parseTarget(target, harness.source.name));
  if (until === 'abort') return await sink.abort();
  await sink.prepare();
  if (until === 'prepare') return;
  await sink.commit();
  if (until === 'abort-after-commit') await sink.abort();
}

/** Where a fault-injecting wrapper strikes: after the source's `open()`, in `estimate()`, or after the first entry. */
type Phase = 'open' | 'estimate' | 'entries';

/** Wraps the source under test so that `strike` runs at one phase of its snapshot (once). */
function injecting(source: Source, phase: Phase, strike: () => void): ReturnType<typeof faultySource> {
  return faultySource(source, {
    opened: () => (phase === 'open' ? strike() : undefined),
    estimate: () => (phase === 'estimate' ? strike() : undefined),
    async *entries(entries) {
      for await (const entry of entries) {
        yield entry;
        if (phase === 'entries') strike();
      }
    },
  });
}

/** Wraps a source so that every entry body throws `failure` after its first chunk (at its end if it has one chunk only). */
function bodiesFailing(source: Source, failure: Error): ReturnType<typeof faultySource> {
  return faultySource(source, {
    async *entries(entries) {
      for await (const entry of entries) {
        yield withBody(entry, async function* (body) {
          for await (const chunk of body) {
            yield chunk;
            break;
          }
          throw failure;
        });
      }
    },
  });
}

/** Only a hang detector: each fault case settles in seconds; a hang fails instead of holding up the suite. */
const HANG = { timeout: 120_000 };

async function listed(destination: Destination): Promise<string[]> {
  const out: string[] = [];
  for await (const object of destination.list()) out.push(object.name);
  return out;
}

/** One backup of a chain and the source's description when it was made. */
interface Point {
  readonly result: BackupResult;
  readonly described: unknown;
}

/**
 * Backs the harness's source up `count` times with `type: 'incremental'`, changing it before each
 * backup after the first; `ownSeconds` starts each backup in a second of its own, as `asOf` needs.
 */
async function backUpChain<Target>(h: SourceHarness<Target>, to: Destination, count: number, options: { ownSeconds?: boolean } = {}): Promise<Point[]> {
  const change = h.change;
  assert.ok(change);
  const db = new Database({ sources: [h.source] });
  const points: Point[] = [];
  for (let i = 0; i < count; i++) {
    if (i > 0) {
      if (options.ownSeconds) await sleep(1000 - (Date.now() % 1000));
      await change();
    }
    const result = await db.startBackup({ to, type: 'incremental' }).done;
    assert.deepEqual([result.type, result.unchanged], [i === 0 ? 'full' : 'incremental', undefined], `backup ${i}`);
    points.push({ result, described: await h.describe() });
  }
  assert.notDeepEqual(points.at(-1)?.described, points[0]?.described, 'change() changes what describe() sees');
  return points;
}

/** One backup of a chain through the adapter alone, as the backup engine drives it. */
interface Taken {
  readonly archive: string;
  readonly mode: SourceMode;
  readonly entries: ReadonlyArray<{ entry: Entry; body: Buffer | undefined }>;
  readonly state: Buffer;
}

/** Opens a snapshot (on `previous`'s state), asks for its changes, and takes its entries and state. */
async function take<Target>(h: SourceHarness<Target>, archive: string, previous?: Taken): Promise<Taken> {
  const snapshot = await h.source.open({ ...noWarnings, archive, ...(previous ? { previous: { archive: previous.archive, read: async function* () { yield previous.state; } } } : {}) });
  try {
    const mode = previous && snapshot.changes ? (await snapshot.changes()).mode : 'full';
    const entries = await collect(snapshot);
    const state: Uint8Array[] = [];
    if (snapshot.state) for await (const chunk of snapshot.state()) state.push(chunk);
    return { archive, mode, entries, state: Buffer.concat(state) };
  } finally {
    await snapshot.close();
  }
}

/** Feeds a restorer the layers of a chain, newest first, as the restore engine does, and commits. */
async function restoreLayers<Target>(h: SourceHarness<Target>, target: Target, layers: readonly Taken[]): Promise<void> {
  const parsed = h.kind.restorer.parseTarget(target, h.source.name);
  await h.kind.restorer.check(parsed);
  const sink = await h.kind.restorer.begin(parsed, new AbortController().signal);
  try {
    for (const [depth, layer] of layers.entries()) {
      await sink.layer?.({ archive: layer.archive, mode: layer.mode, depth });
      for (const { entry, body } of layer.entries) await sink.write(restoreEntryOf(entry, body));
    }
    await sink.prepare();
    await sink.commit();
  } catch (error) {
    await sink.abort();
    throw error;
  }
}

/** Restores `options.backup` (default the newest) of `from` into `target`, as an application does. */
function restoreFrom<Target>(h: SourceHarness<Target>, from: Destination, target: Target, options: { backup?: string; asOf?: Date } = {}) {
  return Database.restore({ from, ...options, targets: { [h.source.name]: target as RestoreTarget } }).done;
}

const names = (points: readonly Point[]) => points.map((p) => p.result.name);

export function testSource<Target>(label: string, make: () => Promise<SourceHarness<Target>>): void {
  describe(`source conformance: ${label}`, () => {
    const withHarness = (fn: (h: SourceHarness<Target>) => Promise<void>) => async () => {
      const harness = await make();
      try {
        await fn(harness);
      } finally {
        await harness.cleanup();
      }
    };

    it('describes itself, and its targets in a few words', withHarness(async ({ source, kind, freshTarget }) => {
      assert.equal(typeof source.name, 'string');
      assert.equal(source.kind, kind.kind);
      assert.equal(kind.restorer.kind, kind.kind);
      assert.ok(source.role === 'database' || source.role === 'files');
      const described = kind.describeTarget(await freshTarget());
      assert.match(described, /^\S.*$/, 'one line, for the CLI\'s restore summary');
    }));

    it('streams safe, unique entries whose bodies have the announced size', withHarness(async ({ source, exactEstimate }) => {
      const snapshot = await source.open(noWarnings);
      try {
        const estimate = await snapshot.estimate();
        const entries = await collect(snapshot);
        assert.ok(entries.length > 0);
        const bytes = entries.reduce((sum, { entry }) => sum + (entry.type === 'file' ? entry.size : 0), 0);
        if (exactEstimate) {
          assert.equal(estimate.items, entries.length);
          assert.equal(estimate.bytes, bytes);
        } else {
          // A guess from the catalog, but of the right magnitude: progress and ETA are built on it.
          assert.ok(estimate.bytes > bytes / 10 && estimate.bytes < bytes * 10, `estimated ${estimate.bytes} bytes, streamed ${bytes}`);
          assert.ok(estimate.items > 0);
        }
        const paths = new Set<string>();
        for (const { entry, body } of entries) {
          assert.ok(!entry.path.startsWith('/') && !entry.path.split('/').includes('..'), `unsafe path ${entry.path}`);
          assert.ok(!paths.has(entry.path), `duplicate path ${entry.path}`);
          paths.add(entry.path);
          if (entry.type === 'file') assert.equal(body?.length, entry.size, `body of ${entry.path}`);
          else assert.equal(body, undefined);
          if (entry.path !== '' && entry.path.includes('/')) assert.ok(paths.has(dirname(entry.path)), `${entry.path} comes after its folder`);
        }
      } finally {
        await snapshot.close();
      }
    }));

    it('restores into a missing target exactly what it backed up', withHarness(async (h) => {
      const target = await h.freshTarget();
      await restoreInto(h, target, 'commit');
      assert.deepEqual(await h.describe(target), await h.describe());
    }));

    it('restores into an existing empty target', withHarness(async (h) => {
      const target = await h.freshTarget();
      await h.createEmpty(target);
      await restoreInto(h, target, 'commit');
      assert.deepEqual(await h.describe(target), await h.describe());
    }));

    it('refuses a non-empty target and leaves it untouched', withHarness(async (h) => {
      const target = await h.freshTarget();
      await h.fill(target);
      const before = await h.describe(target);
      await rejectsWithCode(h.kind.restorer.check(h.kind.restorer.parseTarget(target, h.source.name)), 'TARGET_NOT_EMPTY');
      assert.deepEqual(await h.describe(target), before);
    }));

    it('leaves no trace when aborted before or after commit', withHarness(async (h) => {
      for (const until of ['abort', 'abort-after-commit'] as const) {
        const target = await h.freshTarget();
        const before = await h.surroundings(target);
        await restoreInto(h, target, until);
        assert.deepEqual(await h.surroundings(target), before, `after ${until}`);
      }
    }));

    it('makes a throwaway target, reads back what it restored there without a problem, and removes it', withHarness(async (h) => {
      assert.ok(h.kind.restorer.scratch, 'verifyBackup and restore drills need scratch()');
      const dir = await mkdtemp(join(tmpdir(), 'backupkit-conformance-scratch-'));
      try {
        const scratch = await h.kind.restorer.scratch({ dir, servers: { ...h.servers } }, h.source.name);
        const { sink, archived } = await writeSnapshot(h, h.kind.restorer.parseTarget(scratch.target, h.source.name));
        await sink.prepare();
        await sink.commit();
        assert.ok(sink.verify, 'verifyBackup needs verify()');
        const checks = await sink.verify((async function* () {
          yield* archived;
        })());
        assert.ok(checks.length > 0);
        for (const check of checks) assert.deepEqual(check.problems, [], check.name);
        assert.deepEqual(await h.describe(scratch.target as Target), await h.describe());
        await scratch.remove();
        assert.deepEqual(await readdir(dir), [], 'nothing is left in the scratch folder');
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }));

    it('fails the backup when entries() fails midway: nothing is listed, the snapshot is closed once, no worker thread is left', withHarness(async (h) => {
      const failure = new Error('injected: the source broke after its first entry');
      const faulty = injecting(h.source, 'entries', () => {
        throw failure;
      });
      const destination = memory();
      const before = workerThreads();
      const error = await rejectsWithCode(new Database({ sources: [faulty.source] }).startBackup({ to: destination }).done, 'SOURCE_FAILED');
      assertNoThreadLeft(before, 'entries() failed');
      assert.equal(error.cause, failure, 'the source\'s own error is the cause');
      assert.deepEqual(await listed(destination), [], 'never a short archive, nor its sidecar');
      assert.equal(faulty.closes(), 1);
    }));

    for (const phase of ['open', 'estimate', 'entries'] as const) {
      it(`closes the snapshot exactly once and leaves no worker thread when the backup is cancelled during ${phase}`, withHarness(async (h) => {
        const running: { op?: BackupOperation } = {};
        const faulty = injecting(h.source, phase, () => {
          assert.ok(running.op, 'the operation exists before any source is opened');
          running.op.cancel();
        });
        const destination = memory();
        const before = workerThreads();
        running.op = new Database({ sources: [faulty.source] }).startBackup({ to: destination });
        await rejectsWithCode(running.op.done, 'ABORTED');
        assertNoThreadLeft(before, `cancelled during ${phase}`);
        assert.equal(faulty.closes(), 1);
        assert.deepEqual(await listed(destination), []);
      }));
    }

    /** A case of incremental chains: skipped for a source without them, which has no `change`. */
    const chainCase = (title: string, fn: (h: SourceHarness<Target>) => Promise<void>) =>
      it(title, async (t: TestContext) => {
        const harness = await make();
        try {
          if (harness.change) await fn(harness);
          else t.skip('the source keeps no state to build an incremental on');
        } finally {
          await harness.cleanup();
        }
      });

    it('has chain cases exactly when its snapshots keep a state to build an incremental on', withHarness(async (h) => {
      const snapshot = await h.source.open(noWarnings);
      try {
        assert.equal(h.change !== undefined, snapshot.state !== undefined, 'the harness gives change() when snapshots have state()');
      } finally {
        await snapshot.close();
      }
    }));

    chainCase('restores a chain (full, change, incremental, change, incremental) as the source was at its last backup', async (h) => {
      const from = memory();
      const points = await backUpChain(h, from, 3);
      const target = await h.freshTarget();
      const result = await restoreFrom(h, from, target);
      assert.deepEqual(result.chain, names(points).reverse(), 'the newest backup, read back to its full');
      assert.deepEqual(await h.describe(target), points[2]?.described);
    });

    chainCase('restores a chain as of a time: the middle backup, as the source was then', async (h) => {
      const from = memory();
      const points = await backUpChain(h, from, 3, { ownSeconds: true });
      const middle = points[1] as Point;
      assert.notDeepEqual(middle.described, points[2]?.described);
      const target = await h.freshTarget();
      const asOf = new Date(Math.floor(middle.result.createdAt.getTime() / 1000) * 1000 + 999);
      const result = await restoreFrom(h, from, target, { asOf });
      assert.deepEqual(result.chain, names(points).slice(0, 2).reverse());
      assert.deepEqual(await h.describe(target), middle.described);
    });

    chainCase('writes nothing for an incremental when nothing changed, and names the backup that stands', async (h) => {
      const to = memory();
      const db = new Database({ sources: [h.source] });
      const full = await db.startBackup({ to, type: 'incremental' }).done;
      const before = await listed(to);
      const same = await db.startBackup({ to, type: 'incremental' }).done;
      assert.deepEqual([same.unchanged, same.name, same.type, same.sha256], [true, full.name, full.type, full.sha256], 'the standing backup is named');
      assert.deepEqual(await listed(to), before, 'no archive, sidecar or state written');
    });

    chainCase('refuses a chain whose middle archive is missing with NOT_FOUND naming it, touching nothing; the full still restores', async (h) => {
      const from = memory();
      const points = await backUpChain(h, from, 3);
      const [full, middle, last] = names(points) as [string, string, string];
      await from.remove(middle);
      const target = await h.freshTarget();
      const before = await h.surroundings(target);
      await rejectsWithCode(restoreFrom(h, from, target), 'NOT_FOUND', new RegExp(`has no ${middle.replaceAll('.', '\\.')}, which ${last.replaceAll('.', '\\.')} builds on`));
      assert.deepEqual(await h.surroundings(target), before, 'no target, no staging copy left');
      const again = await h.freshTarget();
      const result = await restoreFrom(h, from, again, { backup: full });
      assert.deepEqual(result.chain, [full], 'what does not need the missing archive restores');
      assert.deepEqual(await h.describe(again), points[0]?.described);
    });

    chainCase('a restorer given a chain with a layer missing refuses it with a typed error, leaving nothing', async (h) => {
      const change = h.change as () => Promise<void>;
      const full = await take(h, '20261201-000001.tar.gz');
      await change();
      const middle = await take(h, '20261201-000002.tar.gz', full);
      await change();
      const last = await take(h, '20261201-000003.tar.gz', middle);
      assert.deepEqual([middle.mode, last.mode], ['changes', 'changes']);
      const broken: Array<[string, Taken[]]> = [['the middle layer missing', [last, full]], ['the newest layer alone', [last]]];
      for (const [what, layers] of broken) {
        const target = await h.freshTarget();
        const before = await h.surroundings(target);
        const error: unknown = await restoreLayers(h, target, layers).then(() => undefined, (caught: unknown) => caught);
        assert.ok(error instanceof BackupError && ['CORRUPT_ARCHIVE', 'RESTORE_FAILED'].includes(error.code), `${what}: ${String(error)}`);
        assert.deepEqual(await h.surroundings(target), before, `${what}: no target, no staging copy left`);
      }
      const target = await h.freshTarget();
      await restoreLayers(h, target, [last, middle, full]);
      assert.deepEqual(await h.describe(target), await h.describe(), 'the whole chain restores');
    });

    const bulky = (h: SourceHarness<Target>) => h.bulky?.() ?? Promise.resolve(h.source);
    /** A plain and an encrypted archive: the OpenPGP stage runs on a thread of its own. */
    const PASSPHRASE = 'conformance';
    const archiveVariants = [
      { label: 'plain', backup: {}, restore: {} },
      { label: 'encrypted', backup: { encrypt: { passphrase: PASSPHRASE } }, restore: { decrypt: { passphrase: PASSPHRASE } } },
    ] as const;

    /**
     * Runs `fault` on the bulky source once per archive variant, then checks what it leaves as
     * `done` settles: no worker thread (one that outlives it may still write into a folder the
     * operation removed, or keep the host's process alive), the snapshot closed once, and nothing
     * on the destination given (`fault` may wrap it).
     */
    const leavesNothing = async (h: SourceHarness<Target>, fault: (variant: (typeof archiveVariants)[number], source: Source, destination: Destination) => Promise<{ closes(): number }>) => {
      const source = await bulky(h);
      for (const variant of archiveVariants) {
        const before = workerThreads();
        const destination = memory();
        const faulty = await fault(variant, source, destination);
        assertNoThreadLeft(before, variant.label);
        assert.equal(faulty.closes(), 1, `${variant.label}: the snapshot is closed once`);
        assert.deepEqual(await listed(destination), [], `${variant.label}: nothing is left on the destination`);
      }
    };

    it('fails with DESTINATION_FAILED when the upload breaks while the source still has data in flight, and leaves no worker thread', HANG, withHarness((h) =>
      leavesNothing(h, async (variant, source, destination) => {
        const counted = faultySource(source, {});
        const to = failingAfter(destination, 1024);
        await rejectsWithCode(new Database({ sources: [counted.source] }).startBackup({ to, compression: { algorithm: 'none' }, ...variant.backup }).done, 'DESTINATION_FAILED', /injected failure/);
        return counted;
      }),
    ));

    it('fails with SOURCE_FAILED when an entry body throws part-way, and leaves no worker thread', HANG, withHarness((h) =>
      leavesNothing(h, async (variant, source, destination) => {
        const failure = new Error('injected: a body broke after its first chunk');
        const faulty = bodiesFailing(source, failure);
        const error = await rejectsWithCode(new Database({ sources: [faulty.source] }).startBackup({ to: destination, ...variant.backup }).done, 'SOURCE_FAILED');
        assert.equal(error.cause, failure, 'the body\'s own error is the cause');
        return faulty;
      }),
    ));

    it('is cancelled while the destination holds a write and the source waits on backpressure, and leaves no worker thread', HANG, withHarness((h) =>
      leavesNothing(h, async (variant, source, destination) => {
        const counted = faultySource(source, {});
        const running: { op?: BackupOperation } = {};
        const to = holdingAfter(destination, 1024, () => setImmediate(() => running.op?.cancel()));
        running.op = new Database({ sources: [counted.source] }).startBackup({ to, compression: { algorithm: 'none' }, ...variant.backup });
        await rejectsWithCode(running.op.done, 'ABORTED');
        return counted;
      }),
    ));

    it('leaves no worker thread when a backup succeeds, nor when a restore succeeds, fails reading or is cancelled', HANG, withHarness(async (h) => {
      const source = await bulky(h);
      for (const variant of archiveVariants) {
        const from = memory();
        let before = workerThreads();
        const { size } = await new Database({ sources: [source] }).startBackup({ to: from, ...variant.backup }).done;
        assertNoThreadLeft(before, `${variant.label} backup`);
        before = workerThreads();
        await Database.restore({ from, ...variant.restore, restorers: [h.kind.restorer], targets: { [source.name]: (await h.freshTarget()) as RestoreTarget } }).done;
        assertNoThreadLeft(before, `${variant.label} restore`);
        // Struck a third of the way through the archive: every thread of the restore is at work.
        before = workerThreads();
        const failing = readsStrikingAfter(from, size / 3, () => new Error('injected: the archive could not be read further'));
        await rejectsWithCode(Database.restore({ from: failing, ...variant.restore, restorers: [h.kind.restorer], targets: { [source.name]: (await h.freshTarget()) as RestoreTarget } }).done, 'DESTINATION_FAILED', /injected/);
        assertNoThreadLeft(before, `${variant.label} restore that failed`);
        before = workerThreads();
        const cancel = new AbortController();
        const cancelling = readsStrikingAfter(from, size / 3, () => void cancel.abort());
        await rejectsWithCode(Database.restore({ from: cancelling, ...variant.restore, restorers: [h.kind.restorer], signal: cancel.signal, targets: { [source.name]: (await h.freshTarget()) as RestoreTarget } }).done, 'ABORTED');
        assertNoThreadLeft(before, `${variant.label} restore cancelled`);
      }
    }));

    it('rejects a target without its required fields', withHarness(async (h) => {
      assert.throws(() => h.kind.restorer.parseTarget({}, h.source.name), { code: 'INVALID_OPTIONS' });
    }));
  });
}
