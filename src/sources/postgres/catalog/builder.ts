import { quoteLiteral } from '../connection.js';
import type { Section } from '../toc.js';
import { aclStatements, type AclPlan } from './privileges.js';
import type { CatalogSessions } from './sessions.js';

/** Objects created by initdb or by the system have OIDs below this (FirstNormalObjectId). */
export const FIRST_NORMAL_OID = 16384;

/** A TOC entry being built: its dependencies are still catalog objects, resolved once every reader ran. */
export interface Draft {
  id: number;
  kind: string;
  schema: string | null;
  name: string;
  section: Section;
  sql: string;
  owner?: string;
  /** Catalog objects this entry creates, as `classid:objid`; dependencies are matched on them. */
  creates: string[];
  /** Extra dependencies known without pg_depend: entries… */
  after: number[];
  /** …and whichever entries create these catalog objects. */
  needs: string[];
  /** The tablespace it is created in, when not the database's default (see readTablespaces). */
  tablespace?: string;
  /** A view's stand-in with the same columns, for when its query needs what post-data creates (see postponeViews). */
  dummy?: string;
}

/** A draft as a reader gives it: the id is the builder's, the lists default to empty. */
export type NewDraft = Omit<Draft, 'id' | 'creates' | 'after' | 'needs'> & { creates?: string[]; after?: number[]; needs?: string[] };

type Row = Record<string, unknown>;

/** What the readers of one catalog read share: the connections, the entries read so far, the next id. */
interface Shared {
  readonly sessions: CatalogSessions;
  readonly drafts: Draft[];
  nextId: number;
}

/**
 * What every catalog reader is given: the snapshot's connections, the schemas backed up, and the
 * entries read so far. Each reader run by {@link CatalogBuilder.readInOrder} has a builder of its
 * own, which holds the results of its queries back until its turn.
 */
export class CatalogBuilder {
  private constructor(
    private readonly shared: Shared,
    /** OIDs of the schemas backed up: the `$1` of most queries. */
    readonly namespaces: number[],
    /** The OIDs of the system catalogs (pg_class, pg_proc, …) whose rows entries create. */
    private readonly classIds: Readonly<Record<string, number>>,
    /** server_version_num, for the catalog columns that differ between versions. */
    readonly serverVersion: number,
    /**
     * No `schemas` limit: objects of no schema (event triggers, publications, default privileges for
     * every schema) are backed up too, as pg_dump dumps them only without `--schema`.
     */
    readonly wholeDatabase: boolean,
    readonly warn: (warning: { code: 'SKIPPED'; message: string }) => void,
    /** Settles once the readers before this one are done. */
    private readonly turn: Promise<void>,
  ) {
    void turn.then(() => (this.inTurn = true));
  }

  /** Its turn came: its queries go before those of the readers after it. */
  private inTurn = false;

  static create(
    sessions: CatalogSessions, namespaces: number[], classIds: Readonly<Record<string, number>>, serverVersion: number, wholeDatabase: boolean,
    warn: (warning: { code: 'SKIPPED'; message: string }) => void,
  ): CatalogBuilder {
    return new CatalogBuilder({ sessions, drafts: [], nextId: 1 }, namespaces, classIds, serverVersion, wholeDatabase, warn, Promise.resolve());
  }

  get drafts(): Draft[] {
    return this.shared.drafts;
  }

  /** Sent at once; the rows (or the failure) come once it is this reader's turn. */
  async query<T extends Row>(sql: string, params: unknown[] = []): Promise<T[]> {
    const rows = this.shared.sessions.query<T>(sql, params, this.inTurn);
    rows.catch(() => {}); // awaited below, in turn
    await this.turn;
    return await rows;
  }

  /**
   * Runs readers side by side: each one's queries go to the server at once, but their results reach
   * it (so it adds its entries, or fails) only once the readers before it are done: entry ids,
   * warnings and the failure reported are those of running them one after the other. A reader must
   * not read or add entries before its first query.
   */
  async readInOrder(readers: ReadonlyArray<(b: CatalogBuilder) => Promise<unknown>>): Promise<void> {
    let turn = this.turn;
    const runs = readers.map((read) => {
      const run = read(new CatalogBuilder(this.shared, this.namespaces, this.classIds, this.serverVersion, this.wholeDatabase, this.warn, turn));
      run.catch(() => {}); // awaited below, in order
      // The next reader's turn comes once this one is done and its own turn came: a reader may end
      // without a query, so without waiting for its turn (publications, with `schemas`).
      const before = turn;
      turn = run.then(() => before, () => before);
      return run;
    });
    for (const run of runs) await run;
  }

  /** A catalog object as `classid:objid`, the form pg_depend rows are matched in. */
  key(catalog: string, oid: unknown): string {
    return `${this.classIds[catalog]}:${String(oid)}`;
  }

  /** A fresh entry id, for entries made after the readers (sequence values, a view's second half). */
  newId(): number {
    return this.shared.nextId++;
  }

  add(draft: NewDraft): Draft {
    const entry: Draft = { id: this.newId(), creates: [], after: [], needs: [], ...draft };
    this.shared.drafts.push(entry);
    return entry;
  }

  /** The COMMENT ON entry of an object, if it has a comment. */
  comment(target: string, text: string | null, of: Draft, schema: string | null): void {
    if (text === null) return;
    this.add({ kind: 'COMMENT', schema, name: target, section: of.section, sql: `COMMENT ON ${target} IS ${quoteLiteral(text)};`, after: [of.id] });
  }

  /** The ACL entries of an object (and of its columns): the owner's grants, then those given by other grantors. */
  grants(target: string, grantTarget: string, owner: string, acl: string | null, of: Draft, schema: string | null, columns: AclPlan[] = []): void {
    if (acl === null && columns.length === 0) return;
    const plans = [...(acl === null ? [] : [aclStatements(grantTarget, owner, acl)]), ...columns];
    const owned = this.add({ kind: 'ACL', schema, name: target, section: 'post-data', sql: plans.flatMap((plan) => plan.owned).join('\n'), after: [of.id] });
    // Grants given by other roles than the owner: run by the superuser under each grantor (restore.ts).
    const delegated = plans.flatMap((plan) => plan.delegated);
    if (delegated.length > 0) this.add({ kind: 'DELEGATED ACL', schema, name: target, section: 'post-data', sql: delegated.join('\n'), after: [owned.id] });
  }
}

/** A condition: the object `oid` of `catalog` is not a member of an extension (which its CREATE EXTENSION makes). */
export function notExtensionMember(catalog: string, oid: string): string {
  return `NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '${catalog}'::regclass AND e.objid = ${oid} AND e.deptype = 'e')`;
}

/**
 * Joins the comment of the object `oid` of `catalog` (of its column `subid`), as `alias`: what
 * obj_description() reads, without a call of that SQL function per row (about 20 µs each).
 */
export function commentJoin(alias: string, catalog: string, oid: string, subid = '0'): string {
  return `LEFT JOIN pg_description ${alias} ON ${alias}.objoid = ${oid} AND ${alias}.classoid = '${catalog}'::regclass AND ${alias}.objsubid = ${subid}`;
}
