import { createHash } from 'node:crypto';
import type { Entry, PreviousState, Snapshot, SnapshotChanges, Source } from '../../src/index.js';

/**
 * A small incremental source over an in-memory key-value map, for testing the engine's side of
 * incrementals without any real adapter: its state is `{ key: sha256 }`, an incremental sends the
 * changed keys plus a `meta` listing of every key.
 */
export function kvSource(name: string, data: Map<string, string>, options: { unreadableState?: boolean } = {}): Source & { opened: Array<PreviousState | undefined> } {
  const opened: Array<PreviousState | undefined> = [];
  return {
    kind: 'kv-test',
    name,
    role: 'database',
    opened,
    async open(context) {
      opened.push(context.previous);
      const frozen = new Map(data);
      const hashes = new Map([...frozen].map(([k, v]) => [k, sha256(v)]));
      let send = [...frozen.keys()];
      const snapshot: Snapshot = {
        estimate: async () => ({ bytes: [...frozen.values()].reduce((n, v) => n + v.length, 0), items: frozen.size }),
        async *entries(): AsyncIterable<Entry> {
          for (const key of send) yield fileEntry(key, frozen.get(key) ?? '');
          yield { ...fileEntry('keys.json', JSON.stringify([...frozen.keys()])), meta: true };
        },
        close: async () => {},
        state: async function* () {
          yield Buffer.from(options.unreadableState ? 'garbage' : JSON.stringify(Object.fromEntries(hashes)));
        },
      };
      if (context.previous) {
        const { previous } = context;
        snapshot.changes = async (): Promise<SnapshotChanges> => {
          const chunks: Buffer[] = [];
          for await (const chunk of previous.read()) chunks.push(Buffer.from(chunk));
          let before: Record<string, string>;
          try {
            before = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, string>;
          } catch {
            context.warn({ code: 'INCREMENTAL_BASE_REJECTED', message: `the state of ${previous.archive} is unreadable` });
            return { mode: 'full', unchanged: false };
          }
          send = [...frozen.keys()].filter((k) => before[k] !== hashes.get(k));
          const deleted = Object.keys(before).filter((k) => !frozen.has(k));
          return { mode: 'changes', unchanged: send.length === 0 && deleted.length === 0 };
        };
      }
      return snapshot;
    },
  };
}

function fileEntry(path: string, text: string): Entry {
  const body = Buffer.from(text);
  return { path, type: 'file', mode: 0o644, mtime: new Date(0), size: body.length, body: async function* () { yield body; } };
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
