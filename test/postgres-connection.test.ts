/**
 * How a PostgreSQL connection is given: an application's `pg.Pool` is recognised by its shape (it
 * may come from another copy of pg than backupkit's), and lends its settings, never a connection.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { Database, memory, postgres } from '../src/index.js';
import { createDatabase, pgUrl, sql } from './helpers/postgres.js';

describe('a PostgreSQL connection given as a pool', () => {
  it("backs up with the settings of the application's pg.Pool, opening none of its connections", async (t) => {
    const database = await createDatabase(t, 'pool');
    await sql(database, 'CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)');
    const pool = new pg.Pool({ connectionString: pgUrl(database), max: 1 });
    t.after(() => pool.end());
    const result = await new Database({ sources: [postgres({ name: 'pg', connection: pool })] }).startBackup({ to: memory() });
    assert.deepEqual(result.sources.map((source) => source.kind), ['postgres']);
    assert.ok(result.sources[0]!.items > 0, 'the table was read');
    assert.equal(pool.totalCount, 0, 'no pooled connection was opened');
  });
});
