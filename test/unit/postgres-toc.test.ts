/**
 * The PostgreSQL TOC written and ordered between turns of the event loop (issue 12: 2,000 tables
 * held it 107 ms in one turn), with the same bytes as before: `toc.json` as `JSON.stringify(toc,
 * null, 1)` wrote it, and the schema fingerprint that incrementals compare with earlier states.
 * Turns are counted, never timed.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { schemaFingerprint } from '../../src/sources/postgres/incremental.js';
import { jsonPieces, renderTocJson, sortEntries, type Toc, type TocEntry } from '../../src/sources/postgres/toc.js';

/** A TOC of `tables` tables with an index, a comment and a grant each, and text that JSON escapes. */
function bigToc(tables: number): Toc {
  const entries: TocEntry[] = [{ id: 1, kind: 'SCHEMA', schema: null, name: 'public', section: 'pre-data', deps: [], sql: '-- the public schema', owner: 'ALTER SCHEMA public OWNER TO "o";' }];
  for (let i = 0; i < tables; i++) {
    const id = 2 + i * 4;
    entries.push(
      { id, kind: 'TABLE', schema: 'public', name: `t${i}`, section: 'pre-data', deps: [1], sql: `CREATE TABLE public.t${i} (\n    id integer, "na""me" text\n);` },
      { id: id + 1, kind: 'INDEX', schema: 'public', name: `t${i}_name`, section: 'post-data', deps: [id], sql: `CREATE INDEX t${i}_name ON public.t${i} USING btree (name);`, tablespace: 'fast' },
      { id: id + 2, kind: 'COMMENT', schema: 'public', name: `TABLE public.t${i}`, section: 'pre-data', deps: [id], sql: `COMMENT ON TABLE public.t${i} IS E'table \\\\ ${i} \u00e9\u2028';` },
      { id: id + 3, kind: 'ACL', schema: 'public', name: `TABLE public.t${i}`, section: 'post-data', deps: [id], sql: `GRANT SELECT ON TABLE public.t${i} TO "r\tx";` },
    );
  }
  return {
    formatVersion: 1,
    server: { version: '15.4', versionNum: 150004 },
    database: { name: 'app', encoding: 'UTF8', collate: 'C', ctype: 'C', provider: 'libc', locale: null, icuRules: null },
    // Entries listed last-first, as sortEntries must reorder them.
    entries: entries.reverse(),
    tables: Array.from({ length: tables }, (_, i) => ({ entry: 2 + i * 4, qualifiedName: `public.t${i}`, columns: ['id', '"na""me"'], dataPath: `data/${i}`, estimatedBytes: 8192 * i, ...(i % 7 === 0 ? { pieces: [0, 10] } : {}) })),
    largeObjects: [],
  };
}

/** Runs `work` while counting the turns of the event loop it lets happen. */
async function countingTurns<T>(work: () => Promise<T>): Promise<{ result: T; turns: number }> {
  let turns = 0;
  let running = true;
  const tick = (): void => {
    if (!running) return;
    turns += 1;
    setImmediate(tick);
  };
  setImmediate(tick);
  try {
    const result = await work();
    return { result, turns };
  } finally {
    running = false;
  }
}

describe('PostgreSQL TOC', () => {
  it('writes toc.json as JSON.stringify(toc, null, 1) did, letting the event loop turn while it writes a large one', async () => {
    const toc = bigToc(20_000);
    const { result, turns } = await countingTurns(() => renderTocJson(toc));
    assert.equal(result, `${JSON.stringify(toc, null, 1)}\n`);
    assert.ok(turns > 0, 'the event loop never turned while 80,000 entries were written');
  });

  it('writes what JSON.stringify writes of small objects too, with either indent', () => {
    const samples = [{}, { a: [] }, { a: [], b: {} }, { a: undefined, b: [1, [2, { c: 'x' }]], d: { e: [] } }, { s: 'quote " slash \\ newline \n' }];
    for (const sample of samples) {
      assert.equal([...jsonPieces(sample, 1)].join(''), JSON.stringify(sample, null, 1));
      assert.equal([...jsonPieces(sample, 0)].join(''), JSON.stringify(sample));
    }
  });

  it('fingerprints the schema as earlier versions did (states they saved still match), letting the event loop turn', async () => {
    const toc = bigToc(20_000);
    const tables = toc.tables.map(({ estimatedBytes: _estimate, pieces: _pieces, ...table }) => table);
    const before = createHash('sha256').update(JSON.stringify({ ...toc, formatVersion: 1, tables })).digest('hex');
    const { result, turns } = await countingTurns(() => schemaFingerprint({ ...toc, formatVersion: 2 }));
    assert.equal(result, before);
    assert.ok(turns > 0, 'the event loop never turned while the fingerprint was computed');
  });

  it('orders a large TOC by its dependencies, letting the event loop turn', async () => {
    const toc = bigToc(20_000);
    const { result, turns } = await countingTurns(() => sortEntries(toc.entries));
    assert.equal(result.cycles.length, 0);
    const position = new Map(result.sorted.map((entry, i) => [entry.id, i]));
    for (const entry of result.sorted) for (const dep of entry.deps) assert.ok(position.get(dep)! < position.get(entry.id)!);
    assert.equal(result.sorted.length, toc.entries.length);
    assert.deepEqual(result.sorted.slice(0, 3).map((entry) => entry.id), [1, 2, 6], 'the schema, then the tables by name');
    assert.ok(turns > 0, 'the event loop never turned while 80,000 entries were ordered');
  });
});
