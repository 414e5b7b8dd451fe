/**
 * One runner across a fleet (issue 14): real processes sharing one moto bucket or one folder, each
 * backing up with `lease`. Expiry is waited for as an outcome (another process gets the lease),
 * never as a length of time.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { azure, BackupError, Database, directory, files, listBackups, memory, s3, type BackupResult, type Destination, type Source } from '../src/index.js';
import { rejectsWithCode } from './helpers/errors.js';
import { startAzurite, type Azurite } from './helpers/azurite.js';
import { tempDir } from './helpers/fs.js';
import { MOTO_CREDENTIALS, startMoto, type Moto } from './helpers/moto.js';
import { stopped, stoppedItself } from './helpers/process.js';

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'helpers', 'lease-child.js');
/** Short, so that a dead or paused holder is replaced soon; the tests wait for that outcome. */
const TTL_MS = 1500;
/** For holders that nothing should replace: a loaded machine must not make them lose their lease. */
const STEADY_TTL_MS = 10_000;

let moto: Moto;
let azurite: Azurite;
before(async () => {
  [moto, azurite] = await Promise.all([startMoto(), startAzurite()]);
});
after(() => Promise.all([moto?.stop(), azurite?.stop()]));

/** Where the fleet backs up: a destination of this process and the JSON the children rebuild it from. */
interface Shared {
  destination: Destination;
  spec: string;
}

const places: Array<[string, (t: TestContext) => Promise<Shared>]> = [
  [
    'one moto bucket',
    async () => {
      const bucket = await moto.createBucket();
      return { destination: s3({ bucket, endpoint: moto.endpoint, forcePathStyle: true, credentials: MOTO_CREDENTIALS }), spec: JSON.stringify({ endpoint: moto.endpoint, bucket }) };
    },
  ],
  [
    'one Azurite container',
    async () => {
      const container = await azurite.createContainer();
      const connectionString = azurite.connectionString();
      return { destination: azure({ container, connectionString }), spec: JSON.stringify({ connectionString, container }) };
    },
  ],
  [
    'one folder',
    async (t) => {
      const path = join(await tempDir(t, 'fleet'), 'backups');
      return { destination: directory({ path }), spec: JSON.stringify({ path }) };
    },
  ],
];

async function folderWithData(t: TestContext, label: string, bytes: number): Promise<string> {
  const dir = join(await tempDir(t, label), 'data');
  await mkdir(dir);
  await writeFile(join(dir, 'data.bin'), randomBytes(bytes));
  return dir;
}

function child(args: string[]): { process: ChildProcess; output: () => string; exited: Promise<unknown[]> } {
  const spawned = spawn(process.execPath, [CHILD, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  let output = '';
  spawned.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  return { process: spawned, output: () => output, exited: once(spawned, 'exit') };
}

function lastLine(output: string): Record<string, unknown> {
  return JSON.parse(output.trim().split('\n').pop() ?? '') as Record<string, unknown>;
}

/** Backs up from this process as soon as the lease is free, as the next process of the fleet would. */
async function backUpWhenFree(database: Database, to: Destination): Promise<BackupResult> {
  for (;;) {
    try {
      return await database.startBackup({ to, lease: { ttlMs: STEADY_TTL_MS } }).done;
    } catch (error) {
      if (!(error instanceof BackupError && error.code === 'LEASE_HELD')) throw error;
      await sleep(50);
    }
  }
}

/** The lease's next fencing token, taken and given back: how many takes there were before. */
async function nextToken(destination: Destination): Promise<number> {
  const lease = await destination.lease!('backupkit.lease', { ttlMs: 60_000, holder: 'the test' });
  await lease.release();
  return lease.token;
}

for (const [label, make] of places) {
  describe(`a fleet sharing ${label}`, () => {
    it('three processes told to back up at once make one backup each, never two at the same time', async (t) => {
      const { destination, spec } = await make(t);
      const markers = await tempDir(t, 'fleet-markers');
      const data = await folderWithData(t, 'fleet-race', 4 * 1024 * 1024); // long enough for the others to try meanwhile
      const children = [0, 1, 2].map(() => child(['race', spec, String(STEADY_TTL_MS), data, markers]));
      await Promise.all(children.map(({ output }) => (async () => {
        while (!output().startsWith('ready\n')) await sleep(20);
      })()));
      for (const { process: spawned } of children) spawned.stdin!.end('go\n');
      const results = await Promise.all(
        children.map(async ({ output, exited }) => {
          const [code] = await exited;
          assert.equal(code, 0, 'every process makes its backup');
          return lastLine(output()) as { name: string; held: number; overlap: boolean };
        }),
      );
      t.diagnostic(`attempts refused with LEASE_HELD: ${results.map((r) => r.held).join(', ')}`);
      assert.deepEqual(results.map((r) => r.overlap), [false, false, false], 'no backup ran while another did');
      const listed = await listBackups(destination);
      assert.deepEqual(listed.map((b) => b.name).sort(), results.map((r) => r.name).sort());
      assert.ok(listed.every((b) => b.trust === 'trusted'));
      assert.equal(await nextToken(destination), 4, 'three takes of the lease, one per backup');
    });

    it('kill -9 of the holder: the next process gets the lease once it expires', async (t) => {
      const { destination, spec } = await make(t);
      const data = await folderWithData(t, 'fleet-kill', 1024);
      const holder = child(['pause', spec, String(TTL_MS), data]);
      await stoppedItself(holder.process); // holding the lease, midway through its backup
      holder.process.kill('SIGKILL');
      await holder.exited;
      const result = await backUpWhenFree(new Database({ sources: [files({ name: 'f', dir: data })] }), destination);
      assert.deepEqual((await listBackups(destination)).map((b) => b.name), [result.name], 'the killed backup left nothing listed');
      assert.equal(await nextToken(destination), 3, 'the killed holder took the lease, then this process');
    });

    it('a holder paused until its lease expired and was taken never commits', async (t) => {
      const { destination, spec } = await make(t);
      const data = await folderWithData(t, 'fleet-pause', 1024);
      const paused = child(['pause', spec, String(TTL_MS), data]);
      let result: BackupResult;
      try {
        await stoppedItself(paused.process);
        result = await backUpWhenFree(new Database({ sources: [files({ name: 'f', dir: data })] }), destination);
        paused.process.kill('SIGCONT');
        const [code] = await paused.exited;
        assert.equal(code, 0);
      } finally {
        await stopped(paused.process, 'SIGKILL'); // left stopped, it would keep this file's process alive forever
      }
      const outcome = lastLine(paused.output());
      assert.equal(outcome.code, 'LEASE_LOST', JSON.stringify(outcome));
      assert.deepEqual((await listBackups(destination)).map((b) => b.name), [result.name], 'only the new holder\'s backup');
      assert.equal(await nextToken(destination), 3);
    });
  });
}

describe('startBackup({ lease })', () => {
  it('refuses a lease option that is not true or { ttlMs } with a whole ttl of at least 500 ms, before writing anything', async (t) => {
    const data = await folderWithData(t, 'lease-options', 10);
    const to = memory();
    const database = new Database({ sources: [files({ name: 'f', dir: data })] });
    for (const lease of [{ ttlMs: 10 }, { ttlMs: 1000.5 }, { ttlMs: '30s' }, 'yes', 1]) {
      await rejectsWithCode(database.startBackup({ to, lease: lease as never }).done, 'INVALID_OPTIONS', /`lease` must be/);
    }
    assert.deepEqual(await listBackups(to), []);
    await database.startBackup({ to, lease: false }).done;
    const lease = await to.lease!('backupkit.lease', { ttlMs: 60_000, holder: 'the test' });
    assert.equal(lease.token, 1, 'lease: false takes no lease');
  });

  it('renews the lease while the backup runs: a backup outlasting its ttl many times over still commits', async (t) => {
    const data = await folderWithData(t, 'lease-heartbeat', 10);
    const to = memory();
    const inner = files({ name: 'f', dir: data });
    const expiries = new Set<string>();
    const slow: Source = {
      ...inner,
      async open(context) {
        // Holds the backup until others have seen its lease renewed three times: never free meanwhile.
        while (expiries.size < 4) {
          const taken = await to.lease!('backupkit.lease', { ttlMs: 60_000, holder: 'the test' }).then(
            () => assert.fail('the lease of a running backup was free'),
            (error: BackupError) => error,
          );
          assert.equal(taken.code, 'LEASE_HELD');
          expiries.add(/until (\S+)$/.exec(taken.message)?.[1] ?? '');
          await sleep(50);
        }
        return inner.open(context);
      },
    };
    const { name } = await new Database({ sources: [slow] }).startBackup({ to, lease: { ttlMs: 600 } }).done;
    assert.deepEqual((await listBackups(to)).map((b) => b.name), [name]);
  });

  it('makes one backup at a time hold across Databases: the second gets LEASE_HELD naming this process as the holder', async (t) => {
    const data = await folderWithData(t, 'lease-databases', 10);
    const to = memory();
    let opened!: () => void;
    const isOpen = new Promise<void>((resolve) => (opened = resolve));
    let proceed!: () => void;
    const gate = new Promise<void>((resolve) => (proceed = resolve));
    const inner = files({ name: 'f', dir: data });
    const waiting: Source = {
      ...inner,
      async open(context) {
        const snapshot = await inner.open(context);
        opened();
        await gate;
        return snapshot;
      },
    };
    const first = new Database({ sources: [waiting] }).startBackup({ to, lease: true });
    await isOpen;
    const held = await rejectsWithCode(new Database({ sources: [inner] }).startBackup({ to, lease: true }).done, 'LEASE_HELD');
    assert.match(held.message, new RegExp(`pid ${process.pid}\\b`));
    proceed();
    const { name } = await first.done;
    assert.deepEqual((await listBackups(to)).map((b) => b.name), [name]);
  });
});
