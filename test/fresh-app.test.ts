/**
 * The package as an application gets it: `npm pack`ed, unpacked into a throwaway app's
 * node_modules, its dependencies linked from this repository's node_modules (so that it runs
 * offline, with what `npm ci` fetched), and the optional peers linked only into the app that
 * uses them. Both apps are type-checked by `tsc` with `strict`, `nodenext` and
 * `skipLibCheck: false`; the one without peers then runs: SQLite backs up, and each optional
 * adapter fails with MISSING_DEPENDENCY naming what to install.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { BackupError } from '../src/index.js';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const PEERS = ['@aws-sdk/client-s3', '@aws-sdk/lib-storage', '@azure/storage-blob', 'openpgp', 'pg', 'pg-connection-string', 'pg-copy-streams', 'prom-client', 'ssh2', 'basic-ftp'];

const TSCONFIG = {
  compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', skipLibCheck: false, noEmit: true, types: ['node'] },
};

/** Uses the root and `backupkit/testing`; the `@ts-expect-error` lines fail if a type is `any`. */
const USES_EVERY_ENTRY_POINT = `
import { BackupError, Database, directory, memory, postgres, s3, sqlite, withRetry, type Destination, type PostgresConnection } from 'backupkit';
import { withRestoredBackup } from 'backupkit/testing';

const to: Destination = withRetry(directory({ path: '/backups' }), { attempts: 2 });
const db = new Database({ sources: [sqlite({ name: 'app', path: 'app.db' }), postgres({ name: 'pg', connection: 'postgres://localhost/app' })] });
const result = await db.startBackup({ to: [to, s3({ bucket: 'b' })] });
const name: string = result.name;
// @ts-expect-error a connection is a string, a client config or a pool, never a number
const wrong: PostgresConnection = 5432;
const path: string = await withRestoredBackup({ from: memory() }, (restored) => restored.sqlitePath('app'));
const failed = new BackupError('NOT_FOUND', 'missing');
export { failed, name, path, wrong };
`;

/** An application that has the SDKs passes its own clients and configs, and connects with what a drill gives it. */
const PASSES_ITS_OWN_CLIENTS = `
import { S3Client } from '@aws-sdk/client-s3';
import { BlobServiceClient } from '@azure/storage-blob';
import pg from 'pg';
import { azure, memory, postgres, s3, type PostgresConnection } from 'backupkit';
import { withRestoredBackup } from 'backupkit/testing';

const config: pg.ClientConfig = { host: 'localhost', database: 'app', ssl: { rejectUnauthorized: false } };
const connections: PostgresConnection[] = [config, new pg.Pool({ connectionString: 'postgres://localhost/app' }), 'postgres://localhost/app'];
for (const connection of connections) postgres({ name: 'pg', connection });
s3({ bucket: 'b', client: new S3Client({ region: 'eu-west-1' }) });
azure({ container: 'c', client: BlobServiceClient.fromConnectionString('UseDevelopmentStorage=true') });
s3({ bucket: 'b', credentials: { accessKeyId: 'id', secretAccessKey: 'secret' } });
s3({ bucket: 'b', credentials: async () => ({ accessKeyId: 'id', secretAccessKey: 'secret' }) });
await withRestoredBackup({ from: memory() }, async (restored) => {
  const client = new pg.Client(restored.postgres('pg'));
  await client.end();
});
`;

/** Tries every optional adapter without its SDK; prints what each did, as JSON. */
const RUNS_WITHOUT_PEERS = `
import Sqlite from 'better-sqlite3';
import { azure, Database, directory, ftp, postgres, s3, sftp, sqlite } from 'backupkit';

const outcome = async (attempt) => {
  try {
    await attempt();
    return { code: 'OK' };
  } catch (error) {
    return { code: error.code, message: error.message, hint: error.hint };
  }
};
const db = new Sqlite('app.db');
db.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)');
db.close();
const backups = directory({ path: 'backups' });
const app = new Database({ sources: [sqlite({ name: 'app', path: 'app.db' })] });
console.log(JSON.stringify({
  sqlite: await outcome(() => app.startBackup({ to: backups })),
  encrypted: await outcome(() => app.startBackup({ to: backups, encrypt: { passphrase: 'secret' } })),
  s3: await outcome(() => app.startBackup({ to: s3({ bucket: 'b', endpoint: 'http://127.0.0.1:9' }) })),
  azure: await outcome(() => app.startBackup({ to: azure({ container: 'c', connectionString: 'UseDevelopmentStorage=true' }) })),
  sftp: await outcome(() => app.startBackup({ to: sftp({ host: '127.0.0.1', port: 9, username: 'u', password: 'p', path: '/backups', hostKey: 'SHA256:x' }) })),
  ftp: await outcome(() => app.startBackup({ to: ftp({ host: '127.0.0.1', port: 9, user: 'u', password: 'p', path: '/backups' }) })),
  postgresUrl: await outcome(async () => postgres({ name: 'pg', connection: 'postgres://127.0.0.1:9/app' })),
  postgresConfig: await outcome(() => new Database({ sources: [postgres({ name: 'pg', connection: { host: '127.0.0.1', port: 9, database: 'app' } })] }).startBackup({ to: backups })),
  metrics: await outcome(async () => app.schedule({ to: backups, full: '1d', metrics: { registry: { getSingleMetric: () => undefined } } })),
}));
`;

/** Links `name` from this repository's node_modules into the app's. */
async function link(app: string, name: string): Promise<void> {
  const target = join(app, 'node_modules', name);
  await mkdir(dirname(target), { recursive: true });
  await symlink(join(ROOT, 'node_modules', name), target, 'dir');
}

/** A throwaway app with the packed backupkit, its dependencies, and `extra` packages. */
async function makeApp(folder: string, tarball: string, extra: readonly string[], sources: Record<string, string>): Promise<string> {
  await mkdir(join(folder, 'node_modules', 'backupkit'), { recursive: true });
  await run('tar', ['-xzf', tarball, '-C', join(folder, 'node_modules', 'backupkit'), '--strip-components=1']);
  const manifest = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  for (const name of [...Object.keys(manifest.dependencies), '@types/node', ...extra]) await link(folder, name);
  await writeFile(join(folder, 'package.json'), JSON.stringify({ name: 'fresh-app', private: true, type: 'module' }));
  await writeFile(join(folder, 'tsconfig.json'), JSON.stringify({ ...TSCONFIG, files: Object.keys(sources).filter((file) => file.endsWith('.ts')) }));
  for (const [file, text] of Object.entries(sources)) await writeFile(join(folder, file), text);
  return folder;
}

/** Runs tsc on the app; resolves with its diagnostics, empty when the app type-checks. */
async function typeCheck(app: string): Promise<string> {
  return run(process.execPath, [TSC, '-p', app], { cwd: app }).then(
    () => '',
    (error: { stdout: string }) => error.stdout,
  );
}

describe('a fresh application', () => {
  let dir: string;
  let bare: string;
  let full: string;
  after(() => rm(dir, { recursive: true, force: true }));
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'backupkit-fresh-app-'));
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 });
    const tarball = join(dir, (JSON.parse(stdout) as Array<{ filename: string }>)[0]!.filename);
    bare = await makeApp(join(dir, 'bare'), tarball, [], { 'app.ts': USES_EVERY_ENTRY_POINT, 'run.js': RUNS_WITHOUT_PEERS });
    full = await makeApp(join(dir, 'full'), tarball, [...PEERS, '@types/pg'], { 'app.ts': USES_EVERY_ENTRY_POINT, 'clients.ts': PASSES_ITS_OWN_CLIENTS });
  });

  it('type-checks the root and backupkit/testing, strict, nodenext, skipLibCheck off, without the SDKs', async () => {
    assert.equal(await typeCheck(bare), '');
  });

  it('type-checks with the SDKs, passing its own pg configs and pools and its own S3Client', async () => {
    assert.equal(await typeCheck(full), '');
  });

  it('backs up SQLite without any optional peer; each other adapter names the package to install', async () => {
    const { stdout } = await run(process.execPath, ['run.js'], { cwd: bare });
    const outcomes = JSON.parse(stdout) as Record<string, { code: string; message: string; hint: string }>;
    assert.equal(outcomes.sqlite?.code, 'OK');
    const expected: Record<string, [name: string, install: string]> = {
      encrypted: ['openpgp', 'npm install openpgp'],
      s3: ['@aws-sdk/client-s3', 'npm install @aws-sdk/client-s3 @aws-sdk/lib-storage'],
      azure: ['@azure/storage-blob', 'npm install @azure/storage-blob'],
      sftp: ['ssh2', 'npm install ssh2'],
      ftp: ['basic-ftp', 'npm install basic-ftp'],
      postgresUrl: ['pg-connection-string', 'npm install pg pg-connection-string pg-copy-streams'],
      postgresConfig: ['pg,', 'npm install pg pg-connection-string pg-copy-streams'],
      metrics: ['prom-client', 'npm install prom-client'],
    };
    for (const [attempt, [name, install]] of Object.entries(expected)) {
      const outcome = outcomes[attempt]!;
      assert.equal(outcome.code, 'MISSING_DEPENDENCY', `${attempt}: ${outcome.message}`);
      assert.ok(outcome.message.includes(`package ${name}`) && outcome.message.includes('is not installed'), `${attempt}: ${outcome.message}`);
      assert.ok(outcome.hint.endsWith(install), `${attempt}: ${outcome.hint}`);
    }
  });

  it('is one ES module package that require() loads too, on runtimes that require ES modules', { skip: !process.features.require_module && 'this Node.js cannot require() an ES module' }, async () => {
    const script = "const b = require('backupkit'); const t = require('backupkit/testing'); console.log(typeof b.Database, typeof b.BackupError, typeof t.withRestoredBackup)";
    const { stdout } = await run(process.execPath, ['--input-type=commonjs', '-e', script], { cwd: bare });
    assert.equal(stdout.trim(), 'function function function');
  });

  it('recognises a BackupError of another copy of backupkit with instanceof, both ways', async () => {
    const other = (await import(pathToFileURL(join(bare, 'node_modules', 'backupkit', 'dist', 'index.js')).href)) as { BackupError: typeof BackupError };
    assert.notEqual(other.BackupError, BackupError, 'two copies');
    const theirs = new other.BackupError('NOT_FOUND', 'made by the other copy');
    assert.ok(theirs instanceof BackupError);
    assert.ok(new BackupError('ABORTED', 'made here') instanceof other.BackupError);
    assert.ok(!(new Error('plain') instanceof BackupError));
    assert.ok(!({ code: 'NOT_FOUND', message: 'look-alike' } instanceof BackupError));
  });
});
