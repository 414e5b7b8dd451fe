/**
 * One runner across a fleet, through schedules (issue 14): real processes with the same
 * two-second schedule and `lease`, sharing one moto bucket or one folder. They run until the fleet
 * has made a number of backups (an outcome, not a length of time); expiry after kill -9 is waited
 * for as another process making the next backup.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { directory, listBackups, s3, type BackupInfo, type Destination, type ScheduleRun } from '../src/index.js';
import { tempDir } from './helpers/fs.js';
import { MOTO_CREDENTIALS, startMoto, type Moto } from './helpers/moto.js';
import { stoppedItself } from './helpers/process.js';

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'helpers', 'schedule-fleet-child.js');
const SLOT_MS = 2_000;
/** Shorter than a slot, so that the slot after a holder dies goes to another process. */
const SHORT_TTL_MS = 1_500;
/** For holders nothing should replace: long enough that a loaded machine's late renewals cannot lose it. */
const LONG_TTL_MS = 10_000;
/** Backups the fleet makes before it is stopped: about twenty seconds of slots. */
const BACKUPS = 8;

let moto: Moto;
before(async () => {
  moto = await startMoto();
});
after(() => moto?.stop());

interface Shared {
  destination: Destination;
  spec: string;
}

const places: Array<[string, number, (t: TestContext) => Promise<Shared>]> = [
  [
    'one moto bucket',
    3,
    async () => {
      const bucket = await moto.createBucket();
      return { destination: s3({ bucket, endpoint: moto.endpoint, forcePathStyle: true, credentials: MOTO_CREDENTIALS }), spec: JSON.stringify({ endpoint: moto.endpoint, bucket }) };
    },
  ],
  [
    'one folder',
    2,
    async (t) => {
      const path = join(await tempDir(t, 'schedule-fleet'), 'backups');
      return { destination: directory({ path }), spec: JSON.stringify({ path }) };
    },
  ],
];

interface Member {
  readonly process: ChildProcess;
  readonly exited: Promise<unknown[]>;
  /** Every JSON line printed so far. */
  lines(): Array<{ run?: ScheduleRun; overlap?: boolean }>;
}

function member(args: string[]): Member {
  const spawned = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  spawned.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const lines = () =>
    output
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as { run?: ScheduleRun; overlap?: boolean });
  return { process: spawned, exited: once(spawned, 'exit'), lines };
}

/** A folder of data and a folder for markers, shared by the members of a fleet. */
async function shared(t: TestContext): Promise<{ data: string; markers: string }> {
  const data = join(await tempDir(t, 'schedule-fleet-data'), 'data');
  await mkdir(data);
  await writeFile(join(data, 'data.bin'), randomBytes(256 * 1024));
  return { data, markers: await tempDir(t, 'schedule-fleet-markers') };
}

/** Starts `count` members with a lease of `ttlMs`; killed when the test ends, if still running. */
function fleet(t: TestContext, count: number, spec: string, folders: { data: string; markers: string }, ttlMs: number, mode = ''): Member[] {
  const members = Array.from({ length: count }, () => member([spec, String(ttlMs), folders.data, folders.markers, mode]));
  t.after(() => Promise.all(members.map(async (m) => (m.process.exitCode === null && m.process.signalCode === null ? (m.process.kill('SIGKILL'), m.exited) : undefined))));
  return members;
}

/** Polls the destination until `done` says its listing is what the test waits for. */
async function until(destination: Destination, done: (backups: BackupInfo[]) => boolean): Promise<BackupInfo[]> {
  for (;;) {
    const backups = await listBackups(destination).catch(() => []);
    if (done(backups)) return backups;
    await sleep(250);
  }
}

/** Stops every member with SIGTERM (each waits for its running backup) and says whether any saw an overlap. */
async function stop(members: readonly Member[]): Promise<boolean[]> {
  return Promise.all(
    members.map(async (m) => {
      m.process.kill('SIGTERM');
      const [code] = await m.exited;
      assert.equal(code, 0);
      return m.lines().at(-1)?.overlap ?? assert.fail('a member did not say whether it saw an overlap');
    }),
  );
}

/** The two-second slot a backup was made for, from the second its name keeps. */
const slotOf = (backup: BackupInfo) => Math.floor(backup.createdAt.getTime() / SLOT_MS);

for (const [label, size, make] of places) {
  describe(`a fleet of ${size} processes with one two-second schedule, sharing ${label}`, () => {
    it('makes one backup per slot, never two at the same time', async (t) => {
      const { destination, spec } = await make(t);
      const members = fleet(t, size, spec, await shared(t), LONG_TTL_MS);
      await until(destination, (backups) => backups.length >= BACKUPS);
      const overlaps = await stop(members);
      assert.deepEqual(overlaps, members.map(() => false), 'no backup ran while another did');

      const backups = await listBackups(destination);
      assert.ok(backups.every((b) => b.trust === 'trusted' && b.type === 'full'));
      const slots = backups.map(slotOf);
      assert.equal(new Set(slots).size, slots.length, `one backup per slot: ${backups.map((b) => b.name).join(' ')}`);
      const runs = members.flatMap((m) => m.lines().flatMap((line) => (line.run ? [line.run] : [])));
      const made = runs.filter((r) => r.outcome === 'succeeded').map((r) => r.name);
      assert.deepEqual([...made].sort(), backups.map((b) => b.name).sort(), 'every listed backup was made by one member, once');
      t.diagnostic(`${backups.length} backups in ${new Set(slots).size} slots; runs skipped: ${runs.filter((r) => r.outcome === 'skipped').map((r) => r.reason).join(', ')}`);
      assert.deepEqual(runs.filter((r) => r.outcome === 'failed'), [], 'the others skipped, none failed');
      assert.ok(runs.some((r) => r.outcome === 'skipped' && r.reason === 'lease'), 'the others found the slot taken');
    });

    it('kill -9 of the holder mid-backup: a later slot goes to another process once the lease expires, and nothing partial is listed', async (t) => {
      const { destination, spec } = await make(t);
      // The holder alone first, with a short lease: it stops itself holding it, and is killed. Then
      // the others, with a long one, so that a loaded machine cannot make them lose theirs.
      const folders = await shared(t);
      const [holder] = fleet(t, 1, spec, folders, SHORT_TTL_MS, 'pause') as [Member];
      await stoppedItself(holder.process);
      holder.process.kill('SIGKILL');
      await holder.exited;
      await rm(join(folders.markers, 'inside')); // the killed holder's: it never got to remove it
      const survivors = fleet(t, size - 1, spec, folders, LONG_TTL_MS);
      await until(destination, (listed) => listed.length >= 2);
      const overlaps = await stop(survivors);
      assert.deepEqual(overlaps, survivors.map(() => false));
      // Listed once every member stopped: on S3 an archive shows before its sidecar is written.
      const backups = await listBackups(destination);
      const made = survivors.flatMap((m) => m.lines().flatMap((line) => (line.run?.outcome === 'succeeded' ? [line.run.name] : [])));
      assert.ok(backups.every((b) => made.includes(b.name)), 'every listed backup is a survivor\'s: the killed one left nothing listed');
      assert.ok(backups.every((b) => b.trust === 'trusted'));
    });
  });
}
