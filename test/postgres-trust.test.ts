import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { access, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Database, directory, memory } from '../src/index.js';
import { CRAFTED_NAME, consistentArchive, craftArchive, manifestFor, pgSource, store } from './helpers/craft.js';
import { rejectsWithCode } from './helpers/errors.js';
import { tempDir } from './helpers/fs.js';
import { databasesLike, dropDatabasesLike, pgUrl, sql, uniqueName } from './helpers/postgres.js';

const server = pgUrl('postgres');
const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'helpers', 'pg-restore-child.js');

async function roleExists(role: string): Promise<boolean> {
  return (await sql('postgres', 'SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).length > 0;
}

async function fileExists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

function restore(from: ReturnType<typeof memory>, database: string, options: Record<string, unknown> = {}) {
  return Database.restore({ from, backup: CRAFTED_NAME, targets: { pg: { connection: server, database, ...options } } });
}

/** A hostile archive's toys: a superuser role to create and a file for the server to write. */
function hostileNames(t: { after(fn: () => Promise<void>): void }): { role: string; written: string; target: string } {
  const role = `bk_evil_${randomBytes(4).toString('hex')}`;
  const target = uniqueName('hostile');
  t.after(async () => {
    await sql('postgres', `DROP ROLE IF EXISTS ${role}`);
    await dropDatabasesLike(target);
  });
  return { role, written: join(tmpdir(), `backupkit-evil-${randomBytes(4).toString('hex')}`), target };
}

describe('postgres restore of archives nobody vouches for', () => {
  it('runs no SQL of an archive whose manifest does not match: the role and the file it asks for never appear', async (t) => {
    const { role, written, target } = hostileNames(t);
    const entries = pgSource([{ sql: `CREATE ROLE ${role} SUPERUSER; COPY (SELECT 'owned') TO '${written}';` }]);
    // The manifest of a harmless archive: stale for the toc.json actually stored.
    const manifest = manifestFor(pgSource([{ sql: 'CREATE SCHEMA evil;' }]));
    const destination = memory();
    await store(destination, await craftArchive([...entries, manifest]));

    await rejectsWithCode(restore(destination, target), 'CORRUPT_ARCHIVE');
    assert.equal(await roleExists(role), false, 'the archive created a role');
    assert.equal(await fileExists(written), false, 'the server wrote a file the archive named');
    assert.deepEqual(await databasesLike(target), []);
  });

  it('runs the SQL of a consistent archive without superuser rights: a superuser role or a server file is refused, nothing is left', async (t) => {
    const { role, written, target } = hostileNames(t);
    const attempts = [
      // Resetting the session's role would undo SET ROLE or SET SESSION AUTHORIZATION: it must not help.
      { sql: `RESET ROLE; RESET SESSION AUTHORIZATION; CREATE ROLE ${role} SUPERUSER;`, refused: /must be superuser|permission denied/ },
      { sql: `COPY (SELECT 'owned') TO '${written}';`, refused: /permission denied|must be superuser|pg_write_server_files/ },
      { sql: `ALTER ROLE CURRENT_USER SUPERUSER;`, refused: /permission denied|must be superuser/ },
    ];
    for (const { sql: statement, refused } of attempts) {
      const destination = memory();
      await store(destination, await consistentArchive([{ sql: statement }]));
      const error = await rejectsWithCode(restore(destination, target), 'RESTORE_FAILED', refused);
      assert.match(error.hint, /trustArchiveSql/);
      assert.equal(await roleExists(role), false, `${statement} created a role`);
      assert.equal(await fileExists(written), false, `${statement} wrote a file`);
      assert.deepEqual(await databasesLike(target), [], 'no staging database is left');
    }
  });

  it('gives owners as the superuser only in the one shape backupkit writes: an owner statement that carries more is refused', async (t) => {
    const { role, target } = hostileNames(t);
    const destination = memory();
    await store(destination, await consistentArchive([{ sql: 'CREATE SCHEMA app;', owner: `ALTER SCHEMA app OWNER TO postgres; CREATE ROLE ${role} SUPERUSER;` }]));
    await rejectsWithCode(restore(destination, target), 'UNSAFE_ARCHIVE', /owner statement/);
    assert.equal(await roleExists(role), false);
    assert.deepEqual(await databasesLike(target), []);

    // The same archive with `ownership: false` restores: its owner statements are not run at all.
    const restored = await restore(destination, target, { ownership: false });
    assert.equal(restored.sources[0]?.items, 3);
    assert.deepEqual(await sql(target, 'SELECT id FROM public.t'), [{ id: 1 }]);
    assert.equal(await roleExists(role), false);
  });

  it('runs grants as the superuser only in the shapes backupkit writes, on objects of the archive or its extensions, never on the system\'s', async (t) => {
    const { role, target } = hostileNames(t);
    await sql('postgres', `CREATE ROLE ${role}`);
    const readFile = 'pg_catalog.pg_read_file(text)';
    const attempts = [
      { kind: 'EXTENSION ACL', sql: `GRANT EXECUTE ON FUNCTION ${readFile} TO ${role};`, refused: /on an object of the system/ },
      { kind: 'DELEGATED ACL', sql: `SET ROLE postgres;\nGRANT EXECUTE ON FUNCTION ${readFile} TO ${role};\nRESET ROLE;`, refused: /on an object of the system/ },
      { kind: 'EXTENSION ACL', sql: `GRANT USAGE ON SCHEMA public TO ${role};`, refused: /belongs to no extension/ },
      { kind: 'DELEGATED ACL', sql: `GRANT USAGE ON SCHEMA public TO ${role}; ALTER ROLE ${role} SUPERUSER;`, refused: /does not write/ },
    ];
    for (const { kind, sql: text, refused } of attempts) {
      const destination = memory();
      await store(destination, await consistentArchive([{ kind, section: 'post-data', sql: text }]));
      await rejectsWithCode(restore(destination, target), 'UNSAFE_ARCHIVE', refused);
      assert.deepEqual(await databasesLike(target), []);
    }
    const [superuser] = await sql<{ rolsuper: boolean }>('postgres', 'SELECT rolsuper FROM pg_roles WHERE rolname = $1', [role]);
    assert.equal(superuser?.rolsuper, false);
  });

  it('gives each object the owner the archive names, and drops the temporary role it ran as', async (t) => {
    const target = uniqueName('owners');
    t.after(() => dropDatabasesLike(target));
    await sql('postgres', 'DO $$ BEGIN CREATE ROLE backupkit_test_owner; EXCEPTION WHEN duplicate_object THEN NULL; END $$');
    const destination = memory();
    // The archive's SQL records whom it ran as: other restores on the server may hold temporary roles meanwhile.
    const sqlText = 'CREATE SCHEMA app; CREATE TABLE app.mine (id integer); CREATE TABLE app.ran_as AS SELECT current_user::text AS name;';
    await store(destination, await consistentArchive([{ sql: sqlText, owner: 'ALTER SCHEMA app OWNER TO backupkit_test_owner;' }]));
    await restore(destination, target);
    const [owners] = await sql<{ schema: string; table: string; database: string }>(target, `
      SELECT (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'app') AS schema,
             (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'app.mine'::regclass) AS table,
             (SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database()) AS database`);
    // The schema's owner is the archive's; what the archive gave no owner goes to the connected role, as before.
    assert.deepEqual(owners, { schema: 'backupkit_test_owner', table: 'postgres', database: 'postgres' });
    const [ranAs] = await sql<{ name: string }>(target, 'SELECT name FROM app.ran_as');
    assert.match(ranAs?.name ?? '', /^backupkit_restore_/, 'the archive SQL ran as the temporary role');
    assert.ok(!(await restoreRoles()).includes(ranAs!.name), 'the temporary role is dropped');
  });
});

async function restoreRoles(): Promise<string[]> {
  return (await sql<{ rolname: string }>('postgres', "SELECT rolname FROM pg_roles WHERE rolname LIKE 'backupkit\\_restore\\_%'")).map((r) => r.rolname);
}

/** A restore in a child process of an archive whose SQL sleeps for an hour: it stays in prepare until killed. */
async function sleepingRestore(t: { after(fn: () => Promise<void>): void }, backups: string, target: string): Promise<{ child: ChildProcess; staging: string }> {
  const child = spawn(process.execPath, [CHILD, backups, server, target], { stdio: 'ignore' });
  const exited = once(child, 'exit');
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  for (;;) {
    const [sleeping] = await sql<{ datname: string }>(
      'postgres',
      "SELECT datname FROM pg_stat_activity WHERE starts_with(datname, $1) AND query LIKE '%pg_sleep(3600)%' AND state = 'active'",
      [`${target}_backupkit_`],
    );
    if (sleeping) return { child, staging: sleeping.datname };
    if (child.exitCode !== null) assert.fail('the restore ended before it ran the archive');
    await sleep(50);
  }
}

describe('leftovers of killed PostgreSQL restores', () => {
  it('the next restore drops what a killed one left (staging database, temporary role, spool folder), never what a live one uses', async (t) => {
    const dir = await tempDir(t);
    const backups = join(dir, 'backups');
    // A table chunk above what a restore keeps in memory: it is spooled.
    await store(directory({ path: backups }), await consistentArchive([{ sql: 'SELECT pg_sleep(3600);' }], {}, 140_000));
    const [killedTarget, liveTarget, nextTarget] = [uniqueName('killed'), uniqueName('live'), uniqueName('next')];
    const stagings: string[] = [];
    t.after(async () => {
      for (const target of [killedTarget, liveTarget, nextTarget]) await dropDatabasesLike(target);
      for (const staging of stagings) await sql('postgres', `DROP ROLE IF EXISTS backupkit_restore_${staging.slice(-8)}`);
    });

    const killed = await sleepingRestore(t, backups, killedTarget);
    const live = await sleepingRestore(t, backups, liveTarget);
    stagings.push(killed.staging, live.staging);
    const killedSpools = async () => (await readdir(tmpdir())).filter((name) => name.startsWith('backupkit-pg-') && name.includes(`_${killed.child.pid}_`));
    assert.equal((await killedSpools()).length, 1, 'the killed restore spooled its table chunk');
    killed.child.kill('SIGKILL');
    await once(killed.child, 'exit');
    assert.deepEqual(await databasesLike(killedTarget), [killed.staging], 'killed, it left its staging database');
    assert.ok(await roleExists(`backupkit_restore_${killed.staging.slice(-8)}`), 'and its temporary role');

    const destination = memory();
    await store(destination, await consistentArchive([]));
    await restore(destination, nextTarget);

    assert.deepEqual(await databasesLike(killedTarget), [], "the killed restore's staging database is dropped");
    assert.equal(await roleExists(`backupkit_restore_${killed.staging.slice(-8)}`), false, 'and its temporary role');
    assert.deepEqual(await killedSpools(), [], 'and its spool folder');
    assert.deepEqual(await databasesLike(liveTarget), [live.staging], "the live restore's staging database is left alone");
    assert.ok(await roleExists(`backupkit_restore_${live.staging.slice(-8)}`), 'and so is its role');
    assert.equal(live.child.exitCode, null, 'and it still runs');
  });
});
