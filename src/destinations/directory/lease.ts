import { link, mkdir, open, readFile, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { BackupError } from '../../errors.js';
import type { Lease, LeaseOptions } from '../../types.js';
import { fsyncPath, isNotFound } from '../../util/fs.js';
import { decodeRecord, encodeRecord, isLive, leaseHeld, leaseLost, newRecord, renewed, takenBy, type LeaseRecord } from '../../util/lease.js';
import { ownerTag } from '../../util/leftovers.js';

/** Rounds of reading and linking before giving up on a lease others keep changing. */
const TAKE_ROUNDS = 5;

/**
 * A lease in a folder, one hidden file per take: `.<name>.<token>`. Taking the lease links a fully
 * written temporary file to the next token's name; `link` fails if that name exists, so of two
 * processes taking over one expired lease exactly one gets the token, and the other reads the
 * winner's file and fails with `LEASE_HELD`. The highest token's file is the lease; its holder
 * renews it (the heartbeat) by replacing that file with a rename, and releases it the same way.
 * Older files are removed by the next taker. The temporaries are named as uploads' are, so those of
 * a killed process are swept as leftovers.
 */
export async function takeDirectoryLease(root: string, name: string, options: LeaseOptions, failed: (action: string, cause: unknown) => BackupError): Promise<Lease> {
  const where = `directory ${root} lease ${name}`;
  const fileOf = (token: number) => join(root, `.${name}.${token}`);
  const pattern = new RegExp(`^\\.${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(\\d+)$`);

  /** The tokens taken so far, highest first. */
  const tokens = async (): Promise<number[]> => {
    const found = (await readdir(root)).flatMap((entry) => {
      const token = pattern.exec(entry)?.[1];
      return token === undefined ? [] : [Number(token)];
    });
    return found.sort((a, b) => b - a);
  };

  /** The current take, or `undefined` if the lease was never taken; `'moved'` if its file went while being read. */
  const newest = async (): Promise<{ token: number; record: LeaseRecord } | undefined | 'moved'> => {
    const [token] = await tokens();
    if (token === undefined) return undefined;
    try {
      return { token, record: decodeRecord(await readFile(fileOf(token)), where) };
    } catch (cause) {
      if (isNotFound(cause)) return 'moved'; // removed by a newer taker: read again
      throw cause;
    }
  };

  /** A complete file holding `record`, under a temporary name; the caller links or renames it. */
  const written = async (record: LeaseRecord): Promise<string> => {
    const temporary = join(root, `.${name}.${ownerTag()}.partial`);
    const handle = await open(temporary, 'wx', 0o600);
    try {
      await handle.writeFile(encodeRecord(record));
      await handle.sync();
    } finally {
      await handle.close();
    }
    return temporary;
  };

  const take = async (): Promise<Lease> => {
    await mkdir(root, { recursive: true });
    for (let round = 0; round < TAKE_ROUNDS; round += 1) {
      const current = await newest();
      if (current === 'moved') continue;
      if (current && isLive(current.record)) throw leaseHeld(where, current.record);
      const record = newRecord(current?.record, options);
      const started = performance.now();
      const temporary = await written(record);
      try {
        await link(temporary, fileOf(record.token));
      } catch (cause) {
        if ((cause as NodeJS.ErrnoException).code !== 'EEXIST') throw cause;
        continue; // another taker got this token first: the next read shows its lease
      } finally {
        await unlink(temporary).catch(() => {});
      }
      await fsyncPath(root);
      // Earlier takes are history now; a taker still reading one finds it gone and reads again.
      for (const older of (await tokens()).filter((token) => token < record.token)) await unlink(fileOf(older)).catch(() => {});
      return held(record, started);
    }
    throw new BackupError('LEASE_HELD', `${where} changed hands ${TAKE_ROUNDS} times while this process tried to take it`);
  };

  /** Throws `LEASE_LOST` unless this take is still the newest and not released. */
  const stillOurs = async (record: LeaseRecord): Promise<void> => {
    const current = await newest();
    if (current === 'moved' || current?.token !== record.token) {
      throw leaseLost(where, current === 'moved' || current === undefined ? 'its file was removed' : takenBy(current.record));
    }
    if (current.record.id !== record.id || current.record.released) throw leaseLost(where, takenBy(current.record));
  };

  const held = (taken: LeaseRecord, takenAt: number): Lease => {
    let record = taken;
    let validUntil = takenAt + record.ttlMs;
    /** Replaces this take's file: a newer taker's file has another name and is never touched. */
    const replace = async (next: LeaseRecord) => {
      const temporary = await written(next);
      try {
        await rename(temporary, fileOf(next.token));
      } catch (cause) {
        await unlink(temporary).catch(() => {});
        throw cause;
      }
    };
    return {
      token: record.token,
      async renew() {
        try {
          await stillOurs(record);
          // A taker deciding right now that the lease expired takes the next token all the same;
          // this renewal cannot stop it, and the next check() sees its file.
          const next = renewed(record);
          const started = performance.now();
          await replace(next);
          record = next;
          validUntil = started + record.ttlMs;
        } catch (cause) {
          throw cause instanceof BackupError ? cause : failed(`renewing the lease ${name}`, cause);
        }
      },
      async check() {
        if (performance.now() > validUntil) throw leaseLost(where, `its ${record.ttlMs} ms ran out before it was renewed`);
        await stillOurs(record).catch((cause: unknown) => {
          throw cause instanceof BackupError ? cause : failed(`checking the lease ${name}`, cause);
        });
      },
      async release() {
        try {
          await stillOurs(record);
          await replace({ ...record, released: true });
        } catch (cause) {
          if (cause instanceof BackupError && cause.code === 'LEASE_LOST') return; // another's now: nothing to give up
          throw cause instanceof BackupError ? cause : failed(`releasing the lease ${name}`, cause);
        }
      },
    };
  };

  try {
    return await take();
  } catch (cause) {
    throw cause instanceof BackupError ? cause : failed(`taking the lease ${name}`, cause);
  }
}
