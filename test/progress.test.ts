/**
 * Progress a user can believe: what every `progress` event of a successful backup or restore says,
 * checked over the whole sequence of events, with estimates that are right (SQLite, files) and
 * one that is not (PostgreSQL sizes tables from their pages).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Database, directory, files, postgres, sqlite, type Operation, type OperationEvents, type ProgressEvent, type Source } from '../src/index.js';
import { tempDir } from './helpers/fs.js';
import { createDatabase, pgUrl, sql } from './helpers/postgres.js';
import { createBank } from './helpers/sqlite.js';

type Recorded = { event: 'source-start'; name: string; estimatedBytes: number | undefined } | { event: 'progress'; progress: ProgressEvent };

/** Records `source-start` and `progress` events in the order they come. */
function record(operation: Operation<unknown, OperationEvents<unknown>>): Recorded[] {
  const events: Recorded[] = [];
  operation.on('source-start', (info) => events.push({ event: 'source-start', name: info.name, estimatedBytes: info.estimatedBytes }));
  operation.on('progress', (progress) => events.push({ event: 'progress', progress }));
  return events;
}

/** What every successful operation's progress must say; `what` names it in failures. */
function assertBelievable(events: readonly Recorded[], what: string): void {
  const started = new Set<string>();
  let previousPercent = 0;
  const progress = events.flatMap((e) => (e.event === 'progress' ? [e.progress] : []));
  assert.ok(progress.length >= 3, `${what}: progress events were emitted`);
  for (const e of events) {
    if (e.event === 'source-start') {
      started.add(e.name);
      continue;
    }
    const p = e.progress;
    const at = `${what}: ${JSON.stringify(p)}`;
    assert.ok(p.etaMs === null || (typeof p.etaMs === 'number' && Number.isFinite(p.etaMs) && p.etaMs >= 0), `etaMs is a number or null: ${at}`);
    assert.ok(p.percent >= previousPercent, `percent never decreases (${previousPercent} before): ${at}`);
    previousPercent = p.percent;
    assert.ok(p.percent >= 0 && p.percent <= 100, `percent within 0..100: ${at}`);
    assert.ok(p.bytesDone <= p.bytesTotal, `bytesDone never passes bytesTotal: ${at}`);
    assert.ok(p.itemsDone <= p.itemsTotal || p.itemsTotal === 0, `itemsDone never passes itemsTotal: ${at}`);
    assert.ok(p.sourceBytesDone <= p.sourceBytesTotal, `a source's bytes never pass its own total: ${at}`);
    if (p.source !== undefined) assert.ok(started.has(p.source), `source-start of ${p.source} precedes its progress: ${at}`);
    else assert.equal(p.sourceBytesDone, 0, at);
  }
  const last = progress.at(-1)!;
  assert.equal(last.percent, 100, `${what}: the last progress event says 100 %`);
  assert.equal(last.etaMs, 0, `${what}: and nothing left to wait for`);
  const done = progress.findIndex((p) => p.percent === 100);
  assert.ok(progress.slice(done).every((p) => p.etaMs === 0 && p.source === undefined), `${what}: 100 % is said only once the operation is done`);
}

async function application(t: Parameters<typeof tempDir>[0]): Promise<{ dir: string; sources: Source[] }> {
  const dir = await tempDir(t, 'progress');
  createBank(join(dir, 'app.db'), 200, 50);
  await mkdir(join(dir, 'uploads', 'a'), { recursive: true });
  await writeFile(join(dir, 'uploads', 'a', 'big.bin'), randomBytes(3 * 1024 * 1024));
  await writeFile(join(dir, 'uploads', 'small.txt'), 'small');
  return { dir, sources: [sqlite({ name: 'app', path: join(dir, 'app.db') }), files({ name: 'uploads', dir: join(dir, 'uploads') })] };
}

describe('progress events', () => {
  it('a backup and a restore of SQLite and files: ETA typed from the start, percent rising to exactly 100', async (t) => {
    const { dir, sources } = await application(t);
    const destination = directory({ path: join(dir, 'backups') });
    const op = new Database({ sources }).startBackup({ to: destination });
    const events = record(op as unknown as Operation<unknown, OperationEvents<unknown>>);
    await op.done;
    assertBelievable(events, 'backup');
    const first = events.find((e) => e.event === 'progress');
    assert.equal(first?.event === 'progress' && first.progress.etaMs, null, 'before any data flows the ETA is null, not undefined');

    const restore = Database.restore({ from: destination, targets: { app: { path: join(dir, 'r', 'app.db') }, uploads: { dir: join(dir, 'r', 'uploads') } } });
    const restoreEvents = record(restore as unknown as Operation<unknown, OperationEvents<unknown>>);
    await restore;
    assertBelievable(restoreEvents, 'restore');
  });

  it('a backup with PostgreSQL, whose estimate is off: totals converge and the last event is 100 %', async (t) => {
    const database = await createDatabase(t, 'progress');
    // Wide rows deleted again: the table's pages, which the estimate counts, are far more than its rows.
    await sql(database, `
      CREATE TABLE notes (id integer PRIMARY KEY, body text);
      INSERT INTO notes SELECT i, repeat(md5(i::text), 20) FROM generate_series(1, 5000) i;
      DELETE FROM notes WHERE id % 4 <> 0;
      ANALYZE notes;`);
    const { dir, sources } = await application(t);
    const op = new Database({ sources: [postgres({ name: 'pg', connection: pgUrl(database) }), ...sources] }).startBackup({ to: directory({ path: join(dir, 'backups') }) });
    const events = record(op as unknown as Operation<unknown, OperationEvents<unknown>>);
    const result = await op.done;
    assertBelievable(events, 'backup with PostgreSQL');
    const pg = events.find((e): e is Extract<Recorded, { event: 'source-start' }> => e.event === 'source-start' && e.name === 'pg');
    const actual = result.sources.find((s) => s.name === 'pg')!.bytes;
    assert.notEqual(pg?.estimatedBytes, actual, 'the PostgreSQL estimate is indeed off, so this test checks convergence');
    const last = events.at(-1);
    assert.ok(last?.event === 'progress');
    assert.equal(last.progress.bytesTotal, result.sources.reduce((sum, s) => sum + s.bytes, 0), 'the total is the bytes actually read');
    const pgEvents = events.flatMap((e) => (e.event === 'progress' && e.progress.source === 'pg' ? [e.progress] : []));
    assert.ok(pgEvents.length > 0);
    assert.ok(pgEvents.every((p) => p.sourceBytesTotal <= Math.max(pg!.estimatedBytes ?? 0, actual)), 'the per-source total is that source\'s own size');
  });
});
