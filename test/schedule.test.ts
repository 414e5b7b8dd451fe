/**
 * Schedules against a fake clock: cron expressions and intervals, catch-up after downtime,
 * overlapping runs, runNow, stop, failures and metrics. Backups are real (a small key-value source
 * that keeps a state, test/helpers/kv-source.ts, into memory destinations); only time is fake, so
 * nothing here waits on the wall clock.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { Registry } from 'prom-client';
import { BackupError, Database, files, listBackups, memory, type Destination, type Schedule, type Source, type ScheduleEvents, type ScheduleOptions, type ScheduleRun } from '../src/index.js';
import { FakeClock } from './helpers/fake-clock.js';
import { failingAfter } from './helpers/faulty.js';
import { tempDir } from './helpers/fs.js';
import { kvSource } from './helpers/kv-source.js';

const HOUR = 3_600_000;
/** A Thursday, on the hour (UTC). */
const T0 = Date.parse('2026-12-03T10:00:00Z');

/**
 * A Database of a source that stores its state, so that incrementals are incrementals, and of a
 * busy application: something changed before every backup, so that none is `unchanged`.
 */
function database(): Database {
  const data = new Map<string, string>();
  const inner = kvSource('kv', data);
  let writes = 0;
  const busy: Source = {
    ...inner,
    open(context) {
      data.set(`key-${++writes}`, 'value');
      return inner.open(context);
    },
  };
  return new Database({ sources: [busy] });
}

/** Every object a destination holds, by name. */
async function objects(destination: Destination): Promise<string[]> {
  const names: string[] = [];
  for await (const object of destination.list()) names.push(object.name);
  return names.sort();
}

/** Resolves with the arguments of the next `event` of `schedule`. */
function next<E extends keyof ScheduleEvents & string>(schedule: Schedule, event: E): Promise<ScheduleEvents[E]> {
  return new Promise((resolve) => schedule.once(event, ((...args: ScheduleEvents[E]) => resolve(args)) as never));
}

/** Every run a schedule reports, in order: started (type and trigger) and settled. */
function record(schedule: Schedule): { runs: string[]; settled: ScheduleRun[] } {
  const log = { runs: [] as string[], settled: [] as ScheduleRun[] };
  schedule.on('run', ({ type, trigger }) => log.runs.push(`${type}:${trigger}`));
  schedule.on('skipped', (run) => log.settled.push(run));
  schedule.on('failed', (run) => log.settled.push(run));
  return log;
}

/** A destination whose uploads wait until `open()` is called: a backup that runs as long as a test needs. */
function gated(inner: Destination): { destination: Destination; open: () => void; reached: Promise<void> } {
  let open!: () => void;
  let reach!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const reached = new Promise<void>((resolve) => (reach = resolve));
  const destination: Destination = {
    ...inner,
    async create(name) {
      reach();
      await gate;
      return inner.create(name);
    },
  };
  return { destination, open, reached };
}

/** Starts a schedule and waits for its start-up check (and catch-up run, if any) to finish; stops it when the test ends. */
async function started(t: TestContext, db: Database, options: ScheduleOptions): Promise<Schedule> {
  const schedule = db.schedule(options);
  t.after(() => schedule.stop({ signal: AbortSignal.abort() }));
  await schedule.started;
  return schedule;
}

/** A destination holding one full backup of `db`, made now. */
async function withFull(db: Database): Promise<{ destination: Destination; createdAt: number }> {
  const destination = memory();
  const result = await db.startBackup({ to: destination });
  return { destination, createdAt: result.createdAt.getTime() };
}

describe('schedule: options', () => {
  it('refuses what it cannot run, with INVALID_OPTIONS', async () => {
    const db = database();
    const to = memory();
    const refused: Array<[Partial<ScheduleOptions>, RegExp]> = [
      [{}, /needs `full`, `incremental` or both/],
      [{ verify: '1d' }, /needs `full`, `incremental` or both/],
      [{ full: '0 3 * *' }, /full: "0 3 \* \*" is neither an interval nor a cron expression/],
      [{ full: '0 0 3 * * * *' }, /neither an interval nor a cron expression/],
      [{ incremental: 'every hour' }, /incremental: "every hour"/],
      [{ full: '0s' }, /never ends/],
      [{ full: '1h', timeZone: 'Nowhere/Special' }, /not a time zone/],
      [{ full: '1h', retention: { keepLast: -1 } }, /keepLast/],
      [{ full: '1h', to: [] }, /`to` must be/],
    ];
    for (const [options, message] of refused) {
      assert.throws(
        () => db.schedule({ to, clock: new FakeClock(T0), ...options }),
        (error: unknown) => error instanceof BackupError && error.code === 'INVALID_OPTIONS' && message.test(error.message),
        JSON.stringify(options),
      );
    }
  });
});

describe('schedule: timing against a fake clock', () => {
  it('sets each type on its cron expression, read in the time zone given, with or without seconds', async (t) => {
    const db = database();
    const { destination } = await withFull(db);
    const clock = new FakeClock(Date.parse('2026-12-03T02:59:00Z'));
    const schedule = await started(t, db, { to: destination, full: '0 4 * * *', incremental: '*/20 * * * * *', verify: '30 5 * * 0', timeZone: 'Europe/Paris', clock });
    const { next: at } = schedule.status();
    assert.equal(at.full?.toISOString(), '2026-12-03T03:00:00.000Z', '04:00 in Paris is 03:00 UTC in winter');
    assert.equal(at.incremental?.toISOString(), '2026-12-03T02:59:20.000Z', 'six fields: seconds first');
    assert.equal(at.verify?.toISOString(), '2026-12-06T04:30:00.000Z', 'the Sunday after');
  });

  it('runs an interval on its slots, counted from the epoch: a full on the hour, an incremental every quarter, never both at once', async (t) => {
    const db = database();
    const { destination, createdAt } = await withFull(db);
    // Just before the next hour after the full that exists: no full is overdue, nothing runs at start.
    const hour = Math.ceil((createdAt + 1) / HOUR) * HOUR;
    const clock = new FakeClock(hour - 30 * 60_000);
    const schedule = await started(t, db, { to: destination, full: '1h', incremental: '15m', clock });
    const log = record(schedule);
    assert.deepEqual(log.runs, [], 'nothing was overdue');
    const expected = ['incremental:schedule', 'full:schedule', 'incremental:schedule', 'incremental:schedule', 'incremental:schedule', 'full:schedule'];
    for (let i = 0; i < expected.length; i++) {
      assert.equal(schedule.status().next.incremental?.getTime(), hour + (i - 1) * 15 * 60_000);
      const settled = next(schedule, 'settled');
      clock.advance(15 * 60_000);
      const [run] = await settled;
      assert.equal(run.outcome, 'succeeded');
      assert.equal(run.backupType, expected[i]!.startsWith('full') ? 'full' : 'incremental');
    }
    assert.deepEqual(log.runs, expected);
    assert.equal(schedule.status().last.full?.outcome, 'succeeded');
    assert.equal(schedule.status().last.incremental?.backupType, 'incremental');
    assert.equal((await listBackups(destination)).length, 1 + expected.length);
  });

  it('runs once, not once per slot, when the process wakes after slots went by', async (t) => {
    const db = database();
    const { destination, createdAt } = await withFull(db);
    const clock = new FakeClock(createdAt); // the backup is as new as the last slot can be: nothing to catch up
    const schedule = await started(t, db, { to: destination, incremental: '1m', clock });
    const log = record(schedule);
    const settled = next(schedule, 'settled');
    const woke = createdAt + 10 * 60_000 + 30_000; // ten slots later, in one step
    clock.advanceTo(woke);
    await settled;
    assert.deepEqual(log.runs, ['incremental:schedule']);
    assert.equal(schedule.status().next.incremental?.getTime(), (Math.floor(woke / 60_000) + 1) * 60_000, 'the next slot after now');
    assert.equal(clock.pending, 1, 'one timer, for that slot');
  });
});

describe('schedule: what each run made', () => {
  it("reports an incremental that found nothing changed as skipped, reason 'unchanged', naming the backup that still stands", async () => {
    const data = new Map([['a', 'one']]);
    const db = new Database({ sources: [kvSource('kv', data)] });
    const { destination, createdAt } = await withFull(db);
    const clock = new FakeClock(createdAt);
    const registry = new Registry();
    const schedule = db.schedule({ to: destination, incremental: '1m', clock, metrics: { registry } });
    await schedule.started;
    try {
      let settled = next(schedule, 'settled');
      clock.advance(60_000);
      const [unchanged] = await settled;
      const [full] = await listBackups(destination);
      assert.deepEqual([unchanged.outcome, unchanged.reason, unchanged.name], ['skipped', 'unchanged', full?.name]);
      assert.equal(schedule.status().consecutiveFailures, 0);
      const metrics = await registry.getMetricsAsJSON();
      const value = (name: string) => metrics.find((m) => m.name === name)?.values.find((v) => v.labels['type'] === 'incremental')?.value;
      assert.equal(value('backupkit_schedule_last_success_timestamp_seconds'), clock.now() / 1000, 'the backups are current');
      assert.equal(value('backupkit_schedule_skipped_total'), 1);
      assert.equal(value('backupkit_schedule_last_size_bytes'), undefined, 'nothing was written');

      data.set('b', 'two');
      settled = next(schedule, 'settled');
      clock.advance(60_000);
      const [changed] = await settled;
      assert.deepEqual([changed.outcome, changed.backupType], ['succeeded', 'incremental']);
      assert.equal((await listBackups(destination)).length, 2);
    } finally {
      await schedule.stop();
    }
  });
});

describe('schedule: long waits', () => {
  it('waits for a slot days away in steps of at most an hour, and runs it on time', async (t) => {
    const db = database();
    const { destination, createdAt } = await withFull(db);
    const clock = new FakeClock(createdAt);
    const schedule = await started(t, db, { to: destination, full: '0 0 1 * *', timeZone: 'UTC', clock }); // monthly
    const log = record(schedule);
    const due = schedule.status().next.full?.getTime() ?? assert.fail('no next full');
    assert.ok(due - createdAt > 24 * HOUR, 'days away');
    let steps = 0;
    while (clock.now() + HOUR < due) {
      clock.advance(HOUR);
      steps += 1;
      assert.equal(clock.pending, 1, 'woke up, found nothing due, and waits again');
    }
    assert.deepEqual(log.runs, [], `nothing ran in ${steps} hours`);
    const settled = next(schedule, 'settled');
    clock.advanceTo(due);
    assert.equal((await settled)[0].outcome, 'succeeded');
    assert.deepEqual(log.runs, ['full:schedule']);
  });
});

describe('schedule: catch-up at start', () => {
  it('makes one full at start when none was made since the full schedule\'s last slot', async (t) => {
    const db = database();
    const { destination, createdAt } = await withFull(db);
    // Three slots of '1h' later: the full is overdue; one catch-up, not three.
    const clock = new FakeClock(Math.ceil((createdAt + 1) / HOUR) * HOUR + 2 * HOUR + 60_000);
    const schedule = db.schedule({ to: destination, full: '1h', incremental: '15m', clock });
    t.after(() => schedule.stop());
    const log = record(schedule);
    const settled = next(schedule, 'settled');
    await schedule.started;
    const [run] = await settled;
    assert.equal(run.backupType, 'full');
    assert.deepEqual(log.runs, ['full:catch-up']);
    assert.equal(schedule.status().last.full?.trigger, 'catch-up');
  });

  it('makes none when the newest full is younger than the last slot', async () => {
    const db = database();
    const { destination, createdAt } = await withFull(db);
    const clock = new FakeClock(Math.ceil((createdAt + 1) / HOUR) * HOUR - 1_000);
    const schedule = db.schedule({ to: destination, full: '1h', incremental: '15m', clock });
    const log = record(schedule);
    await schedule.started;
    await schedule.stop();
    assert.deepEqual(log.runs, []);
  });

  it('with only an incremental schedule and an empty destination, the first run is a full one', async (t) => {
    const db = database();
    const destination = memory();
    const schedule = db.schedule({ to: destination, incremental: '15m', clock: new FakeClock(T0) });
    t.after(() => schedule.stop());
    const log = record(schedule);
    const settled = next(schedule, 'settled');
    await schedule.started;
    const [run] = await settled;
    assert.deepEqual(log.runs, ['incremental:catch-up']);
    assert.equal(run.backupType, 'full', 'nothing to build on');
    assert.equal(schedule.status().last.incremental?.backupType, 'full');
  });
});

describe('schedule: runs never overlap', () => {
  it('skips, and reports, a run that falls due while a backup runs; queues nothing', async (t) => {
    const db = database();
    const { destination: existing, createdAt } = await withFull(db);
    const { destination, open, reached } = gated(existing);
    const hour = Math.ceil((createdAt + 1) / HOUR) * HOUR;
    const clock = new FakeClock(hour - 1_000);
    const schedule = await started(t, db, { to: destination, full: '1h', incremental: '1m', clock });
    const log = record(schedule);
    clock.advanceTo(hour); // the full starts, and waits at the gate
    await reached;
    const skipped = next(schedule, 'skipped');
    clock.advanceTo(hour + 60_000);
    const [run] = await skipped;
    assert.deepEqual([run.type, run.outcome, run.reason, run.trigger], ['incremental', 'skipped', 'running', 'schedule']);
    assert.deepEqual(schedule.status().running.map((r) => r.type), ['full']);
    const manual = await schedule.runNow({ type: 'incremental' });
    assert.deepEqual([manual.outcome, manual.reason, manual.trigger], ['skipped', 'running', 'manual']);
    const settled = next(schedule, 'settled');
    open();
    assert.equal((await settled)[0].outcome, 'succeeded');
    assert.deepEqual(log.runs, ['full:schedule'], 'nothing was queued behind it');
    assert.deepEqual(schedule.status().running, []);
    assert.equal((await listBackups(destination)).length, 2);
  });
});

describe('schedule: runNow, verify and stop', () => {
  it('runNow makes a backup or a verification outside the slots; verify runs on its own schedule', async (t) => {
    // Full backups of a folder: what every version of verifyBackup reads.
    const dir = await tempDir(t, 'schedule-verify');
    await writeFile(join(dir, 'a.txt'), 'some data\n');
    const db = new Database({ sources: [files({ name: 'uploads', dir })] });
    const { destination, createdAt } = await withFull(db);
    const hour = Math.ceil((createdAt + 1) / HOUR) * HOUR;
    const clock = new FakeClock(hour - 1_000);
    const schedule = await started(t, db, { to: destination, full: '1d', verify: '1h', clock });
    const run = await schedule.runNow();
    assert.deepEqual([run.outcome, run.backupType, run.trigger], ['succeeded', 'full', 'manual']);
    const verified = next(schedule, 'verified');
    const settled = next(schedule, 'settled');
    clock.advanceTo(hour);
    const [verification] = await settled;
    assert.deepEqual([verification.type, verification.outcome, verification.error], ['verify', 'succeeded', undefined]);
    const [result] = await verified;
    assert.equal(result.name, run.name, 'the newest backup');
    assert.equal(schedule.status().last.verify?.outcome, 'succeeded');
    assert.equal((await schedule.runNow({ type: 'verify' })).outcome, 'succeeded');
  });

  it('stop() waits for the running backup, which commits; no run starts after it', async (t) => {
    const db = database();
    const { destination: existing, createdAt } = await withFull(db);
    const { destination, open, reached } = gated(existing);
    const hour = Math.ceil((createdAt + 1) / HOUR) * HOUR;
    const clock = new FakeClock(hour - 1_000);
    const schedule = await started(t, db, { to: destination, full: '1h', clock });
    const log = record(schedule);
    clock.advanceTo(hour);
    await reached;
    let stopped = false;
    const stopping = schedule.stop().then(() => (stopped = true));
    await Promise.resolve();
    assert.equal(stopped, false, 'still waiting for the backup');
    open();
    await stopping;
    assert.equal(schedule.status().last.full?.outcome, 'succeeded');
    assert.equal(clock.pending, 0, 'no timer left');
    clock.advanceTo(hour + 5 * HOUR);
    assert.deepEqual(log.runs, ['full:schedule']);
    assert.deepEqual(schedule.status().next, {});
    await assert.rejects(schedule.runNow(), (error: unknown) => error instanceof BackupError && error.code === 'ABORTED');
    assert.equal((await listBackups(destination)).length, 2);
  });

  it('stop({ signal }) cancels the running backup when the signal aborts: nothing is left behind', async (t) => {
    const db = database();
    const { destination: existing, createdAt } = await withFull(db);
    const { destination, open, reached } = gated(existing);
    const hour = Math.ceil((createdAt + 1) / HOUR) * HOUR;
    const clock = new FakeClock(hour - 1_000);
    const schedule = await started(t, db, { to: destination, full: '1h', clock });
    clock.advanceTo(hour);
    await reached;
    const before = await objects(existing);
    const cancel = new AbortController();
    const stopping = schedule.stop({ signal: cancel.signal });
    cancel.abort();
    open();
    await stopping;
    assert.equal(schedule.status().last.full?.errorCode, 'ABORTED');
    assert.equal(schedule.status().consecutiveFailures, 0, 'a shutdown is not a failure');
    assert.equal((await listBackups(destination)).length, 1, 'only the backup made before');
    assert.deepEqual(await objects(existing), before, 'no archive, sidecar, state, claim or partial upload of the cancelled one');
  });
});

describe('schedule: one runner across a fleet (lease)', () => {
  it("skips, with reason 'lease', a slot whose backup another process made, and one whose lease another holds", async (t) => {
    const db = database();
    // Another process of the fleet made the backup of the slot at `second`: its name keeps that second.
    const { destination, createdAt } = await withFull(db);
    const second = Math.floor(createdAt / 1000) * 1000;
    const clock = new FakeClock(second - 500);
    const schedule = await started(t, db, { to: destination, full: '1s', lease: { ttlMs: 60_000 }, clock });
    const log = record(schedule);
    let settled = next(schedule, 'settled');
    clock.advanceTo(second);
    let [run] = await settled;
    assert.deepEqual([run.outcome, run.reason], ['skipped', 'lease'], 'its backup is listed');

    for (const name of ['backupkit.lease', 'backupkit.schedule']) {
      const held = await destination.lease!(name, { ttlMs: 60_000, holder: 'another process' });
      settled = next(schedule, 'settled');
      clock.advance(1_000);
      [run] = await settled;
      assert.deepEqual([run.outcome, run.reason], ['skipped', 'lease'], `${name} is held`);
      await held.release();
    }
    settled = next(schedule, 'settled');
    clock.advance(1_000);
    [run] = await settled;
    assert.equal(run.outcome, 'succeeded', 'the lease is free and the slot not made yet');
    assert.equal(log.settled.length, 3, 'three skips, no failure');
    assert.equal(schedule.status().consecutiveFailures, 0);
    assert.equal((await listBackups(destination)).length, 2);
  });
});

describe('schedule: failures and metrics', () => {
  it('reports a failed run, counts failures in a row, goes on, and publishes prom-client metrics', async (t) => {
    const db = database();
    const { destination: good, createdAt } = await withFull(db);
    let failing = true;
    const broken = failingAfter(good, 0, 'broken');
    const destination: Destination = { ...good, create: (name) => (failing ? broken.create(name) : good.create(name)) };
    const registry = new Registry();
    const hour = Math.ceil((createdAt + 1) / HOUR) * HOUR;
    const clock = new FakeClock(hour - 1_000);
    const schedule = await started(t, db, { to: destination, full: '1h', clock, name: 'nightly', metrics: { registry } });
    for (let i = 1; i <= 2; i++) {
      const failed = next(schedule, 'failed');
      clock.advanceTo(hour + (i - 1) * HOUR);
      const [run, error] = await failed;
      assert.deepEqual([run.outcome, run.errorCode, error.code], ['failed', 'DESTINATION_FAILED', 'DESTINATION_FAILED']);
      assert.equal(schedule.status().consecutiveFailures, i);
    }
    const afterFailures = await registry.getMetricsAsJSON();
    const value = (metrics: typeof afterFailures, name: string, type: string) => metrics.find((m) => m.name === name)?.values.find((v) => v.labels['schedule'] === 'nightly' && v.labels['type'] === type)?.value;
    assert.equal(value(afterFailures, 'backupkit_schedule_failures_total', 'full'), 2);
    assert.equal(value(afterFailures, 'backupkit_schedule_failures_total', 'incremental'), 0);
    assert.equal(value(afterFailures, 'backupkit_schedule_last_success_timestamp_seconds', 'full'), undefined, 'no success yet');

    failing = false;
    const ended = next(schedule, 'end');
    const settled = next(schedule, 'settled');
    clock.advanceTo(hour + 2 * HOUR);
    const [result] = await ended;
    await settled;
    assert.equal(schedule.status().consecutiveFailures, 0);
    const metrics = await registry.getMetricsAsJSON();
    assert.equal(value(metrics, 'backupkit_schedule_last_success_timestamp_seconds', 'full'), (hour + 2 * HOUR) / 1000, 'the fake clock\'s time');
    assert.equal(value(metrics, 'backupkit_schedule_last_size_bytes', 'full'), result.size);
    assert.equal(value(metrics, 'backupkit_schedule_last_duration_seconds', 'full'), result.durationMs / 1000);
    assert.equal(value(metrics, 'backupkit_schedule_failures_total', 'full'), 2);
    assert.match(await registry.metrics(), /^backupkit_schedule_last_size_bytes\{schedule="nightly",type="full"\} \d+$/m);
  });

  it('two schedules share one registry, told apart by their name', async (t) => {
    const db = database();
    const registry = new Registry();
    const { destination, createdAt } = await withFull(db);
    const clock = new FakeClock(createdAt);
    await started(t, db, { to: destination, full: '1d', clock, name: 'a', metrics: { registry } });
    await started(t, db, { to: destination, full: '1d', clock, name: 'b', metrics: { registry } });
    const failures = (await registry.getMetricsAsJSON()).find((m) => m.name === 'backupkit_schedule_failures_total');
    assert.deepEqual([...new Set(failures?.values.map((v) => v.labels['schedule']))], ['a', 'b']);
  });
});
