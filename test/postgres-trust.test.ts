import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { Database, memory } from '../src/index.js';
import { CRAFTED_NAME, craftArchive, headerEntry, manifestFor, store, type CraftedEntry } from './helpers/craft.js';
import { rejectsWithCode } from './helpers/errors.js';
import { databasesLike, dropDatabasesLike, pgUrl, sql, uniqueName } from './helpers/postgres.js';

const server = pgUrl('postgres');

/** A PostgreSQL source whose toc.json runs `sql` in one pre-data entry: what a hostile archive's author writes. */
function hostileSource(statements: string): CraftedEntry[] {
  const file = (name: string, value: unknown): CraftedEntry => {
    const body = Buffer.from(JSON.stringify(value));
    return { header: { name: `sources/pg/${name}`, type: 'file', size: body.length }, body };
  };
  const toc = {
    formatVersion: 1,
    server: { version: '15', versionNum: 150000 },
    database: { name: 'app', encoding: 'UTF8', collate: 'C', ctype: 'C' },
    entries: [{ id: 1, kind: 'SCHEMA', schema: null, name: 'evil', section: 'pre-data', deps: [], sql: statements }],
    tables: [],
    largeObjects: [],
  };
  return [headerEntry([{ name: 'pg', kind: 'postgres' }]), file('toc.json', toc), file('data.json', { tables: [] })];
}

async function roleExists(role: string): Promise<boolean> {
  return (await sql('postgres', 'SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).length > 0;
}

async function fileExists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

describe('postgres restore of archives nobody vouches for', () => {
  it('runs no SQL of an archive whose manifest does not match: the role and the file it asks for never appear', async (t) => {
    const role = `bk_evil_${randomBytes(4).toString('hex')}`;
    const written = `/tmp/backupkit-evil-${randomBytes(4).toString('hex')}`;
    const target = uniqueName('stale');
    t.after(async () => {
      await sql('postgres', `DROP ROLE IF EXISTS ${role}`);
      await dropDatabasesLike(target);
    });
    const entries = hostileSource(`CREATE ROLE ${role} SUPERUSER; COPY (SELECT 'owned') TO '${written}';`);
    // The manifest of a harmless archive: stale for the toc.json actually stored.
    const manifest = manifestFor(hostileSource('CREATE SCHEMA evil;'));
    const destination = memory();
    await store(destination, await craftArchive([...entries, manifest]));

    await rejectsWithCode(Database.restore({ from: destination, backup: CRAFTED_NAME, targets: { pg: { connection: server, database: target } } }), 'CORRUPT_ARCHIVE');
    assert.equal(await roleExists(role), false, 'the archive created a role');
    assert.equal(await fileExists(written), false, 'the server wrote a file the archive named');
    assert.deepEqual(await databasesLike(target), []);
  });
});
