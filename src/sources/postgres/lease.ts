import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { asBackupError } from '../../errors.js';
import { ownerTag, removeAbandoned } from '../../util/leftovers.js';
import { connect, quoteIdent } from './connection.js';

/**
 * What a PostgreSQL restore leaves on the server while it runs (a staging database, a temporary
 * role, a throwaway database for a verification) carries an 8-hex-digit tag, and the restore holds
 * a session-level advisory lock on that tag for as long as it lives. A killed restore's session
 * ends with it, and so does its lock: whoever takes the lock next knows the owner is gone.
 */

/** The first key of every lease's advisory lock ('bkrs'), the tag being the second. */
const LEASE_NAMESPACE = 0x626b7273;
const TAG = '[0-9a-f]{8}';
const ROLE_PREFIX = 'backupkit_restore_';
/** Staging databases (`<target>_backupkit_<tag>`), throwaway targets and temporary roles. */
const LEFTOVERS_SQL = `
  SELECT name, kind, substring(name from '(${TAG})$') AS tag FROM (
    SELECT datname AS name, 'database' AS kind FROM pg_database WHERE datname ~ '_backupkit_${TAG}$' OR datname ~ '^backupkit_scratch_${TAG}$'
    UNION ALL SELECT rolname, 'role' FROM pg_roles WHERE rolname ~ '^${ROLE_PREFIX}${TAG}$'
  ) leftovers ORDER BY kind, name`;
/** Errors that mean "not ours to drop" (another user's leftover, or a role still owning things elsewhere). */
const NOT_OURS = new Set(['42501', '2BP01']);
const SPOOL_PREFIX = 'backupkit-pg-';

/** A fresh tag for the names of one restore's server objects. */
export function newTag(): string {
  return randomBytes(4).toString('hex');
}

/** The temporary role a restore runs an archive's SQL as, when it connects as a superuser. */
export function restoreRoleName(tag: string): string {
  return `${ROLE_PREFIX}${tag}`;
}

/** A connection holding the advisory lock of one tag, until `release()` or the process's death. */
export class Lease {
  private constructor(
    /** The session that holds the lock; also serves for what the restore runs in the maintenance database. */
    readonly client: pg.Client,
  ) {}

  /** Opens a connection to `admin`'s database and takes the lock of `tag`. */
  static async take(admin: pg.ClientConfig, tag: string): Promise<Lease> {
    const client = await connect(admin, 'RESTORE_FAILED');
    try {
      await client.query('SELECT pg_catalog.pg_advisory_lock($1, $2)', [LEASE_NAMESPACE, tagKey(tag)]);
    } catch (cause) {
      await client.end().catch(() => {});
      throw asBackupError(cause, 'RESTORE_FAILED', 'Taking the advisory lock of a PostgreSQL restore failed');
    }
    return new Lease(client);
  }

  /** Ends the session, which releases the lock. */
  async release(): Promise<void> {
    await this.client.end().catch(() => {});
  }
}

/**
 * Drops the staging databases, throwaway databases and temporary roles whose restore is gone (its
 * lock is free), never one a live restore holds. Leftovers the connected role may not drop are
 * another user's and are left alone. Returns what was dropped.
 */
export async function dropServerLeftovers(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ name: string; kind: 'database' | 'role'; tag: string }>(LEFTOVERS_SQL);
  const dropped: string[] = [];
  for (const tag of new Set(rows.map((row) => row.tag))) {
    const { rows: [lock] } = await client.query<{ free: boolean }>('SELECT pg_catalog.pg_try_advisory_lock($1, $2) AS free', [LEASE_NAMESPACE, tagKey(tag)]);
    if (!lock?.free) continue;
    try {
      // Databases first: a temporary role owns its staging database.
      for (const { name, kind } of rows.filter((row) => row.tag === tag)) {
        const sql = kind === 'database' ? `DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)` : `DROP ROLE IF EXISTS ${quoteIdent(name)}`;
        try {
          if (kind === 'role') await revokeTablespaces(client, name);
          await client.query(sql);
          dropped.push(`${kind} ${name}`);
        } catch (cause) {
          if (!NOT_OURS.has((cause as { code?: string }).code ?? '')) throw asBackupError(cause, 'RESTORE_FAILED', `Dropping ${kind} ${name}, left by a restore that is gone, failed`);
        }
      }
    } finally {
      await client.query('SELECT pg_catalog.pg_advisory_unlock($1, $2)', [LEASE_NAMESPACE, tagKey(tag)]);
    }
  }
  return dropped;
}

/** Takes back the CREATE on tablespaces a restore granted its temporary role: a role holding a privilege cannot be dropped. */
export async function revokeTablespaces(client: pg.Client, role: string): Promise<void> {
  const { rows } = await client.query<{ name: string }>(`
    SELECT t.spcname AS name FROM pg_catalog.pg_tablespace t
     WHERE EXISTS (SELECT 1 FROM pg_catalog.aclexplode(t.spcacl) a WHERE a.grantee = pg_catalog.to_regrole($1))`, [role]);
  for (const { name } of rows) await client.query(`REVOKE ALL ON TABLESPACE ${quoteIdent(name)} FROM ${quoteIdent(role)}`);
}

/** Makes a private folder (0700) for one restore's spooled entries, named so a later restore can tell whether its owner lives. */
export async function makeSpoolFolder(): Promise<string> {
  const folder = join(tmpdir(), `${SPOOL_PREFIX}${ownerTag()}`);
  await mkdir(folder, { mode: 0o700 });
  return folder;
}

/** Removes the spool folders of restores that are gone (killed before they could). */
export async function removeAbandonedSpools(): Promise<void> {
  await removeAbandoned(tmpdir(), SPOOL_PREFIX);
}

/**
 * A SCRAM-SHA-256 verifier for `password` (RFC 5802, as the server stores it): the password itself
 * is never sent to the server, nor written to its statement log.
 */
export function scramVerifier(password: string): string {
  const salt = randomBytes(16);
  const iterations = 4096;
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/** The tag as the signed 32-bit second key of `pg_advisory_lock(int4, int4)`. */
function tagKey(tag: string): number {
  return Number.parseInt(tag, 16) | 0;
}
