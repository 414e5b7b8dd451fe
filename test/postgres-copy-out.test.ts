/**
 * The COPY TO reader that takes the connection's socket from `pg` while the rows stream: rows cut
 * into chunks at row boundaries, the row count, notices in the middle, errors in the middle, and a
 * connection lost in the middle; several tables' COPY statements in one query.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { copyTableOut, copyTablesOut, type CopyUnit } from '../src/sources/postgres/copy-out.js';
import type { DataFigures } from '../src/sources/postgres/toc.js';
import type { TocTable } from '../src/sources/postgres/toc.js';
import { createDatabase, pgUrl, sql } from './helpers/postgres.js';

const ROWS = 30000;

/** Rows `g\tv<g>` (every 997th with a 5,000-byte value), 40 MB in `big`, and a filter that sends a notice every 1,000 rows and fails at `fail_at`. */
const SETUP = `
  CREATE TABLE t (g integer, v text);
  INSERT INTO t SELECT g, CASE WHEN g % 997 = 0 THEN repeat('x', 5000) ELSE 'v' || g END FROM generate_series(1, ${ROWS}) g;
  CREATE TABLE big AS SELECT g, repeat('y', 200) AS v FROM generate_series(1, 200000) g;
  CREATE FUNCTION pass(g integer, fail_at integer) RETURNS boolean LANGUAGE plpgsql AS $$
  BEGIN
    IF g % 1000 = 0 THEN RAISE NOTICE 'row %', g; END IF;
    IF g = fail_at THEN RAISE EXCEPTION 'failed at row %', g; END IF;
    RETURN true;
  END $$;`;

function rowsOf(failAt: number): TocTable {
  return { entry: 1, qualifiedName: 'public.t', columns: ['g', 'v'], dataPath: 'data/1-public.t', estimatedBytes: 0, condition: `WHERE public.pass(g, ${failAt})` };
}

/** The table's COPY text as the server has it, in its physical order (a row that did not fit its page is on the next one). */
async function expectedText(database: string): Promise<string> {
  const [{ text }] = (await sql<{ text: string }>(database, "SELECT string_agg(g || E'\\t' || v || E'\\n', '' ORDER BY ctid) AS text FROM t")) as [{ text: string }];
  return text;
}

/** A client of its own, ended before the test's database is dropped (which would end it from the server's side). */
async function connected(database: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: pgUrl(database) });
  client.on('error', () => {}); // a lost connection is reported to the query too
  await client.connect();
  return client;
}

describe('COPY TO reader', () => {
  it('cuts rows into chunks at row boundaries, skips notices in the middle, and reads the row count; the connection stays usable', async (t) => {
    const database = await createDatabase(t, 'copyout');
    await sql(database, SETUP);
    const client = await connected(database);
    const chunks: Buffer[] = [];
    const figures = await copyTableOut(client, rowsOf(0), 4000, async (chunk, index) => {
      assert.equal(index, chunks.length + 1);
      chunks.push(Buffer.from(chunk));
      await new Promise((resolve) => setImmediate(resolve));
    });
    assert.equal(figures.rows, ROWS);
    assert.ok(Buffer.concat(chunks).toString() === (await expectedText(database)), 'the chunks hold the COPY text');
    for (const chunk of chunks) {
      assert.equal(chunk.at(-1), 0x0a, 'every chunk ends at a row boundary');
      // A row longer than a chunk comes in a chunk of its own; the others stay under the size asked for.
      assert.ok(chunk.length <= 4000 || chunk.indexOf(0x0a) === chunk.length - 1, `a chunk of ${chunk.length} bytes`);
    }
    assert.equal(figures.chunks, chunks.length);
    assert.equal(figures.bytes, Buffer.concat(chunks).length);
    assert.deepEqual((await client.query('SELECT 1 AS one')).rows, [{ one: 1 }]);
    await client.end();
  });

  it("fails with the server's error when it comes in the middle of the rows, and the connection stays usable", async (t) => {
    const database = await createDatabase(t, 'copyerr');
    await sql(database, SETUP);
    const client = await connected(database);
    let received = 0;
    await assert.rejects(
      copyTableOut(client, rowsOf(20000), 64 * 1024, async (chunk) => void (received += chunk.length)),
      /failed at row 20000/,
    );
    assert.ok(received > 0, 'rows came before the error');
    assert.deepEqual((await client.query('SELECT 1 AS one')).rows, [{ one: 1 }]);
    await client.end();
  });

  it("copies several tables in one query, each one's chunks and figures its own, an empty one too; the connection stays usable", async (t) => {
    const database = await createDatabase(t, 'copymany');
    await sql(database, `${SETUP}; CREATE TABLE empty (g integer); CREATE TABLE few AS SELECT g, 'w' || g AS v FROM generate_series(1, 3) g`);
    const client = await connected(database);
    const table = (name: string, columns: string[]): TocTable => ({ entry: 1, qualifiedName: `public.${name}`, columns, dataPath: `data/${name}`, estimatedBytes: 0 });
    const units: CopyUnit[] = [
      { table: table('few', ['g', 'v']), piece: undefined },
      { table: table('empty', ['g']), piece: undefined },
      { table: rowsOf(0), piece: undefined },
      { table: table('few', ['v']), piece: undefined },
    ];
    const texts: Buffer[][] = units.map(() => []);
    const figures: DataFigures[] = [];
    await copyTablesOut(client, units, 4000, async (unit, chunk, index) => {
      assert.equal(index, texts[unit]!.length + 1);
      texts[unit]!.push(Buffer.from(chunk));
    }, async (unit, done) => {
      assert.equal(unit, figures.length, 'units complete in order');
      figures.push(done);
    });
    assert.deepEqual(figures.map((done) => done.rows), [3, 0, ROWS, 3]);
    assert.equal(Buffer.concat(texts[0]!).toString(), '1\tw1\n2\tw2\n3\tw3\n');
    assert.equal(texts[1]!.length, 0);
    assert.ok(Buffer.concat(texts[2]!).toString() === (await expectedText(database)), "the third unit's chunks hold its COPY text");
    assert.equal(Buffer.concat(texts[3]!).toString(), 'w1\nw2\nw3\n');
    // Each unit's figures are what a COPY of its own gives.
    for (const [i, { table: alone }] of units.entries()) assert.deepEqual(figures[i], await copyTableOut(client, alone, 4000, async () => {}));
    assert.deepEqual((await client.query('SELECT 1 AS one')).rows, [{ one: 1 }]);
    await client.end();
  });

  it("fails with the server's error when a later table's COPY fails, the tables before it done", async (t) => {
    const database = await createDatabase(t, 'copymanyerr');
    await sql(database, SETUP);
    const client = await connected(database);
    const done: number[] = [];
    await assert.rejects(
      copyTablesOut(client, [{ table: rowsOf(0), piece: undefined }, { table: rowsOf(20000), piece: undefined }, { table: rowsOf(0), piece: undefined }], 64 * 1024, async () => {}, async (unit) => void done.push(unit)),
      /failed at row 20000/,
    );
    assert.deepEqual(done, [0]);
    assert.deepEqual((await client.query('SELECT 1 AS one')).rows, [{ one: 1 }]);
    await client.end();
  });

  it('ends the connection when a chunk cannot be taken, rather than handing pg the rows still coming', async (t) => {
    const database = await createDatabase(t, 'copyrefused');
    await sql(database, SETUP);
    const client = await connected(database);
    const big: TocTable = { entry: 2, qualifiedName: 'public.big', columns: ['g', 'v'], dataPath: 'data/2-public.big', estimatedBytes: 0 };
    await assert.rejects(
      copyTableOut(client, big, 64 * 1024, async () => {
        throw new Error('no room');
      }),
      /no room/,
    );
    // pg, given the rest of the COPY's rows, threw from its socket handler: an uncaught exception.
    await assert.rejects(client.query('SELECT 1'));
    await client.end().catch(() => {});
  });

  it('fails, without hanging, when the connection is lost in the middle of the rows', async (t) => {
    const database = await createDatabase(t, 'copylost');
    await sql(database, SETUP);
    const client = await connected(database);
    const [{ pid }] = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows as [{ pid: number }];
    let terminated = false;
    // Larger than the sockets' buffers: the server is still sending when its connection ends.
    const big: TocTable = { entry: 2, qualifiedName: 'public.big', columns: ['g', 'v'], dataPath: 'data/2-public.big', estimatedBytes: 0 };
    await assert.rejects(
      copyTableOut(client, big, 64 * 1024, async () => {
        if (terminated) return;
        terminated = true;
        await sql('postgres', 'SELECT pg_terminate_backend($1)', [pid]);
        // Give the server time to close the socket while the rows wait here.
        await new Promise((resolve) => setTimeout(resolve, 200));
      }),
    );
    await client.end().catch(() => {});
  });
});
