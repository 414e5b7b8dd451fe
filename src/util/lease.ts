/**
 * Leases kept in one small object of a destination (see `Destination.lease`): the record every
 * adapter stores, how its expiry is judged, the errors, and the whole protocol for stores with
 * conditional writes (S3's and Azure's `If-None-Match: *` and `If-Match: <etag>`, and memory).
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { BackupError } from '../errors.js';
import type { Lease, LeaseOptions } from '../types.js';

/** What a lease object holds. */
export interface LeaseRecord {
  readonly format: 'backupkit-lease';
  /** The fencing token: each take of a free lease adds one. */
  readonly token: number;
  /** The holder, for people. */
  readonly holder: string;
  /** Tells one take from another, also two takes by one process. */
  readonly id: string;
  readonly ttlMs: number;
  /** The holder's clock plus the ttl, at its last take or renewal: others judge expiry by their own clock. */
  readonly expiresAt: string;
  /** Given up by its holder: free to take at once. */
  readonly released: boolean;
}

/** A record for a fresh take of the lease after `previous` (or of a lease never taken). */
export function newRecord(previous: LeaseRecord | undefined, options: LeaseOptions): LeaseRecord {
  return {
    format: 'backupkit-lease',
    token: (previous?.token ?? 0) + 1,
    holder: options.holder,
    id: randomBytes(12).toString('hex'),
    ttlMs: options.ttlMs,
    expiresAt: new Date(Date.now() + options.ttlMs).toISOString(),
    released: false,
  };
}

/** The same take, extended by its ttl from now. */
export function renewed(record: LeaseRecord): LeaseRecord {
  return { ...record, expiresAt: new Date(Date.now() + record.ttlMs).toISOString() };
}

/** A record as stored: one line of JSON. */
export function encodeRecord(record: LeaseRecord): Buffer {
  return Buffer.from(`${JSON.stringify(record)}\n`);
}

/**
 * Reads a lease object. A damaged one is an error, never a free lease: taking it over could give
 * a second holder while the first still runs.
 */
export function decodeRecord(bytes: Buffer, where: string): LeaseRecord {
  let record: Partial<LeaseRecord> | undefined;
  try {
    record = JSON.parse(bytes.toString('utf8')) as Partial<LeaseRecord>;
  } catch {
    // reported below
  }
  const valid =
    record?.format === 'backupkit-lease' &&
    Number.isSafeInteger(record.token) &&
    typeof record.holder === 'string' &&
    typeof record.id === 'string' &&
    typeof record.expiresAt === 'string' &&
    !Number.isNaN(Date.parse(record.expiresAt)) &&
    typeof record.released === 'boolean';
  if (!valid) {
    throw new BackupError('DESTINATION_FAILED', `${where} is not a backupkit lease`, {
      hint: `Make sure no backup runs against this destination, then delete ${where}.`,
    });
  }
  return record as LeaseRecord;
}

/** Whether another holder still holds it, as far as this process's clock can tell. */
export function isLive(record: LeaseRecord): boolean {
  return !record.released && Date.parse(record.expiresAt) > Date.now();
}

/** `LEASE_HELD`, naming the holder and when its lease expires, in the message and in the hint. */
export function leaseHeld(where: string, record: LeaseRecord): BackupError {
  const seconds = Math.max(0, Math.ceil((Date.parse(record.expiresAt) - Date.now()) / 1000));
  return new BackupError('LEASE_HELD', `${where} is held by ${record.holder} (token ${record.token}) until ${record.expiresAt}`, {
    hint: `Another process (${record.holder}) is backing up to this destination; its lease expires at ${record.expiresAt} (in ${seconds} s) unless it renews it. Let it finish, or try again after that: a holder that died is replaced once its lease expires.`,
  });
}

/** `LEASE_LOST`, saying why. */
export function leaseLost(where: string, why: string): BackupError {
  return new BackupError('LEASE_LOST', `${where} is no longer this process's lease: ${why}`);
}

/** Why the lease object no longer names this take. */
export function takenBy(record: LeaseRecord | undefined): string {
  if (record === undefined) return 'it was deleted';
  if (record.released) return `it was released (token ${record.token})`;
  return `${record.holder} took it (token ${record.token})`;
}

/** One object that can be replaced only if it is still the version read, as S3's `If-Match`. */
export interface VersionedObject {
  /** The object's bytes and version, or `undefined` if there is none. */
  read(): Promise<{ bytes: Buffer; version: string } | undefined>;
  /**
   * Writes `bytes` if the object is missing (`expected` undefined) or still at version `expected`;
   * returns the new version, or `undefined` when that condition did not hold.
   */
  write(bytes: Buffer, expected: string | undefined): Promise<string | undefined>;
}

/** An object's ETag, the version `If-Match` compares: a server that gives none cannot keep a lease. */
export function versionOf(etag: string | undefined, where: string): string {
  if (etag === undefined || etag === '') {
    throw new BackupError('DESTINATION_FAILED', `${where}: the server gave no ETag`, {
      hint: 'This server does not support the conditional writes leases need (If-Match on an ETag): put a destination that does first in `to`, or back up without `lease`.',
    });
  }
  return etag;
}

/** Rounds of read and conditional write before giving up on a lease others keep changing. */
const TAKE_ROUNDS = 5;

/**
 * Takes the lease kept in `object`: a missing lease is created with `If-None-Match`, an expired
 * or released one replaced with `If-Match`, each with the next fencing token. Of two takers, the
 * condition lets one write; the other reads the winner's record and fails with `LEASE_HELD`.
 *
 * A write whose answer was lost and retried (the SDKs retry) fails its condition against itself:
 * it is recognised by its `id` on the next read. A take is confirmed by reading it back, which
 * also catches a server whose conditional writes race (moto's check-then-store).
 */
export async function takeVersioned(object: VersionedObject, where: string, options: LeaseOptions): Promise<Lease> {
  let mine: LeaseRecord | undefined;
  let started = 0;
  for (let round = 0; ; round += 1) {
    const current = await object.read();
    const record = current && decodeRecord(current.bytes, where);
    if (current && record && mine && record.id === mine.id && !record.released) return versionedLease(object, where, record, current.version, started);
    if (record && isLive(record)) throw leaseHeld(where, record);
    if (round === TAKE_ROUNDS) throw new BackupError('LEASE_HELD', `${where} changed hands ${TAKE_ROUNDS} times while this process tried to take it`);
    mine = newRecord(record, options);
    started = performance.now();
    await object.write(encodeRecord(mine), current?.version); // won or lost, the next read tells
  }
}

function versionedLease(object: VersionedObject, where: string, taken: LeaseRecord, takenVersion: string, takenAt: number): Lease {
  let record = taken;
  let version = takenVersion;
  let validUntil = takenAt + record.ttlMs;
  /** The record as stored now, if it still names this take. */
  const ours = async (): Promise<{ record: LeaseRecord; version: string }> => {
    const current = await object.read();
    const stored = current && decodeRecord(current.bytes, where);
    if (!current || !stored || stored.id !== record.id || stored.released) throw leaseLost(where, takenBy(stored));
    return { record: stored, version: current.version };
  };
  return {
    token: record.token,
    async renew() {
      const next = renewed(record);
      const started = performance.now();
      const written = await object.write(encodeRecord(next), version);
      if (written === undefined) {
        // Lost to another writer, or a retried write of our own that had landed: the read tells.
        const stored = await ours();
        if (stored.record.expiresAt !== next.expiresAt) throw leaseLost(where, 'another write replaced it');
        version = stored.version;
      } else {
        version = written;
      }
      record = next;
      validUntil = started + record.ttlMs;
    },
    async check() {
      if (performance.now() > validUntil) throw leaseLost(where, `its ${record.ttlMs} ms ran out before it was renewed`);
      await ours();
    },
    async release() {
      await object.write(encodeRecord({ ...record, released: true }), version); // refused if no longer ours: then nothing to give up
    },
  };
}
