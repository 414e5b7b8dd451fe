import { Readable, Writable } from 'node:stream';
import { BackupError } from '../../errors.js';
import type { Destination, Lease, LeaseOptions, ReadRange, StoredObject, Upload } from '../../types.js';
import { takeVersioned } from '../../util/lease.js';
import { checkObjectName } from '../object-name.js';
import { checkRange } from '../range.js';

const READ_CHUNK = 64 * 1024;
/** Numbers each memory destination, so that two of them are told apart in `to` and in messages. */
let created = 0;

/**
 * Keeps archives in this process's memory: for tests, yours and ours. Objects appear only when
 * committed, as with every other destination. Its leases coordinate backups within this process.
 * @public
 */
export function memory(): Destination {
  const objects = new Map<string, { bytes: Buffer; modifiedAt: Date }>();
  /** Leases live beside the objects, never listed: they are no archive. */
  const leases = new Map<string, { bytes: Buffer; version: string }>();
  let versions = 0;
  const description = `memory #${++created}`;
  const notFound = (name: string) => new BackupError('NOT_FOUND', `${description} has no ${name}`);

  return {
    kind: 'memory',
    description,
    capabilities: { deferredCommit: true },

    async create(name: string): Promise<Upload> {
      checkObjectName(name);
      const chunks: Buffer[] = [];
      const stream = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          chunks.push(chunk);
          callback();
        },
      });
      return {
        stream,
        async commit() {
          if (objects.has(name)) throw new BackupError('ALREADY_EXISTS', `${description} already holds ${name}; it was not replaced`);
          objects.set(name, { bytes: Buffer.concat(chunks), modifiedAt: new Date() });
        },
        async abort() {
          stream.destroy();
          chunks.length = 0;
        },
      };
    },

    async open(name: string, range?: ReadRange) {
      checkObjectName(name);
      const { start, end } = checkRange(range);
      const object = objects.get(name);
      if (!object) throw notFound(name);
      const bytes = object.bytes.subarray(start, end);
      return Readable.from(
        (function* () {
          for (let offset = 0; offset < bytes.length; offset += READ_CHUNK) yield bytes.subarray(offset, offset + READ_CHUNK);
        })(),
      );
    },

    async *list(prefix = ''): AsyncIterable<StoredObject> {
      for (const [name, { bytes, modifiedAt }] of objects) {
        if (name.startsWith(prefix)) yield { name, size: bytes.length, modifiedAt };
      }
    },

    async remove(name: string) {
      checkObjectName(name);
      if (!objects.delete(name)) throw notFound(name);
    },

    async lease(name: string, options: LeaseOptions): Promise<Lease> {
      checkObjectName(name);
      return takeVersioned(
        {
          read: async () => leases.get(name),
          async write(bytes, expected) {
            if (leases.get(name)?.version !== expected) return undefined;
            const version = String(++versions);
            leases.set(name, { bytes, version });
            return version;
          },
        },
        `${description} lease ${name}`,
        options,
      );
    },
  };
}
