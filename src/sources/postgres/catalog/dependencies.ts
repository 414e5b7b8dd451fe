/** From drafts to the TOC's entries: dependencies from pg_depend, the order pg_dump would give, and the checks that a restore can follow it. */
import { BackupError } from '../../../errors.js';
import { cooperative } from '../../../util/yield.js';
import { sortEntries, type TocEntry } from '../toc.js';
import { FIRST_NORMAL_OID, type CatalogBuilder, type Draft } from './builder.js';
import { refuseOutsideDependencies } from './preflight.js';

/** The rows of pg_depend the entries' order follows, as `classid:objid` pairs. */
export interface Dependencies {
  /** Members of extensions, each with its extension's OID. */
  readonly members: ReadonlyArray<{ obj: string; ext: number }>;
  /** Links between objects created after initdb: `obj` uses `ref`. */
  readonly links: ReadonlyArray<{ obj: string; ref: string }>;
}

/** Reads pg_depend: both queries at once, as neither needs the entries. */
export async function readDependencies(b: CatalogBuilder): Promise<Dependencies> {
  const [members, links] = await Promise.all([
    b.query<{ obj: string; ext: number }>(`
    SELECT d.classid::int || ':' || d.objid::int AS obj, d.refobjid::int AS ext FROM pg_depend d WHERE d.deptype = 'e'`),
    // A sequence's OWNED BY link ('a' from sequence to table) is a separate entry, or it would cycle with the column default.
    b.query<{ obj: string; ref: string }>(`
    SELECT d.classid::int || ':' || d.objid::int AS obj, d.refclassid::int || ':' || d.refobjid::int AS ref
      FROM pg_depend d
     WHERE d.deptype IN ('n', 'a', 'i') AND d.objid >= ${FIRST_NORMAL_OID} AND d.refobjid >= ${FIRST_NORMAL_OID}
       AND NOT (d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a'
                AND EXISTS (SELECT 1 FROM pg_class s WHERE s.oid = d.objid AND s.relkind = 'S'))`),
  ]);
  return { members, links };
}

/**
 * The entries in restore order, each with the entries it depends on: dependencies from pg_depend,
 * translated from catalog objects to the entries that create them (members of an extension stand
 * for the extension, so what uses them comes after CREATE EXTENSION), then the sequences' values.
 */
export async function sortedEntries(
  b: CatalogBuilder, { members, links }: Dependencies, schemas: readonly string[] | undefined, sequenceValues: ReadonlyArray<[number, string]>,
): Promise<TocEntry[]> {
  // Tens of thousands of rows and entries for a few thousand tables: ordered between turns of the event loop.
  const yieldNow = cooperative();
  const creator = new Map<string, number>();
  for (const draft of b.drafts) {
    for (const object of draft.creates) creator.set(object, draft.id);
    await yieldNow();
  }
  for (const row of members) {
    const ext = creator.get(b.key('pg_extension', row.ext));
    if (ext !== undefined && !creator.has(row.obj)) creator.set(row.obj, ext);
  }
  const deps = new Map(b.drafts.map((draft) => [draft.id, new Set(draft.after)]));
  for (const draft of b.drafts) {
    for (const object of draft.needs) {
      const to = creator.get(object);
      if (to !== undefined) deps.get(draft.id)!.add(to);
    }
  }
  // With `schemas`, what the backed-up objects use in other schemas would be missing at restore.
  const outside: Array<{ obj: string; ref: string }> = [];
  for (const row of links) {
    const from = creator.get(row.obj);
    const to = creator.get(row.ref);
    if (from !== undefined && to !== undefined && from !== to) deps.get(from)!.add(to);
    if (schemas && from !== undefined && to === undefined) outside.push(row);
    await yieldNow();
  }
  if (outside.length > 0) await refuseOutsideDependencies(b, outside, schemas!);

  postponeViews(b.drafts, deps, () => b.newId());
  orderRefreshes(b.drafts, deps);

  const entries: TocEntry[] = [];
  for (const draft of b.drafts) {
    entries.push({
      id: draft.id, kind: draft.kind, schema: draft.schema, name: draft.name, section: draft.section,
      deps: [...deps.get(draft.id)!].sort((a, b) => a - b), sql: draft.sql, ...(draft.owner ? { owner: draft.owner } : {}),
      ...(draft.tablespace ? { tablespace: draft.tablespace } : {}),
    });
    await yieldNow();
  }
  const { sorted, cycles } = await sortEntries(entries);
  if (cycles.length > 0) {
    throw new BackupError('SOURCE_FAILED', `The schema has a dependency cycle backupkit cannot order, through ${cycles.map((e) => `${e.kind} ${e.name}`).join(', ')}`, {
      hint: 'Report this with the objects named; pg_dump breaks such cycles with special cases that backupkit does not have yet.',
    });
  }
  // A restore runs pre-data before post-data whatever the dependencies: one that points back would fail it.
  const byId = new Map(entries.map((entry) => [entry.id, entry]));
  const early = entries.flatMap((entry) => (entry.section === 'pre-data' ? entry.deps.filter((dep) => byId.get(dep)?.section === 'post-data').map((dep) => [entry, byId.get(dep)!]) : []));
  if (early.length > 0) {
    throw new BackupError('SOURCE_FAILED', `The schema has objects that need what is created after the data, which no restore could order: ${early.slice(0, 5).map(([entry, dep]) => `${entry!.kind} ${entry!.schema ?? ''}.${entry!.name} needs ${dep!.kind} ${dep!.schema ?? ''}.${dep!.name}`).join('; ')}`, {
      hint: 'Report this with the objects named; pg_dump breaks such dependencies with special cases that backupkit does not have yet.',
    });
  }
  for (const [entry, value] of sequenceValues) {
    const seq = b.drafts[entry - 1]!;
    sorted.push({ id: b.newId(), kind: 'SEQUENCE SET', schema: seq.schema, name: seq.name, section: 'data', deps: [entry], sql: value });
  }
  return sorted;
}

/**
 * A view whose query needs what is created after the data (a view grouping by a primary key needs the
 * key) is created twice, as pg_dump does: before the data as a stand-in with the same columns (other
 * objects may use its row type), then `CREATE OR REPLACE VIEW` with its query after what it needs.
 */
function postponeViews(drafts: Draft[], deps: Map<number, Set<number>>, newId: () => number): void {
  const byId = new Map(drafts.map((draft) => [draft.id, draft]));
  for (const view of [...drafts]) {
    if (view.dummy === undefined) continue;
    const late = [...deps.get(view.id)!].filter((dep) => byId.get(dep)?.section === 'post-data');
    if (late.length === 0) continue;
    for (const dep of late) deps.get(view.id)!.delete(dep);
    const replace: Draft = {
      id: newId(), kind: 'VIEW', schema: view.schema, name: view.name, section: 'post-data', sql: view.sql.replace(/^CREATE VIEW /, 'CREATE OR REPLACE VIEW '),
      creates: [], after: [view.id], needs: [],
    };
    view.sql = view.dummy;
    drafts.push(replace);
    deps.set(replace.id, new Set([view.id, ...late]));
  }
}

/**
 * A materialized view's REFRESH reads the materialized views it is built on, directly or through
 * views: those must be refreshed first (as pg_dump's buildMatViewRefreshDependencies does), or the
 * refresh fails with "has not been populated".
 */
function orderRefreshes(drafts: readonly Draft[], deps: Map<number, Set<number>>): void {
  const byId = new Map(drafts.map((draft) => [draft.id, draft]));
  const refreshOf = new Map<number, number>();
  for (const draft of drafts) if (draft.kind === 'MATERIALIZED VIEW DATA') refreshOf.set(draft.after[0]!, draft.id);
  for (const [matview, refresh] of refreshOf) {
    const seen = new Set<number>([matview]);
    const pending = [...deps.get(matview)!];
    while (pending.length > 0) {
      const id = pending.pop()!;
      const kind = byId.get(id)?.kind;
      if (seen.has(id) || (kind !== 'VIEW' && kind !== 'MATERIALIZED VIEW')) continue;
      seen.add(id);
      const before = refreshOf.get(id);
      if (before !== undefined) deps.get(refresh)!.add(before);
      pending.push(...deps.get(id)!);
    }
  }
}
