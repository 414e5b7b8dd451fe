/**
 * A process of a fleet running one schedule: a full backup of `<folder>` every two seconds to a
 * shared destination, with `lease`. Usage:
 * schedule-fleet-child.js <destination as JSON: { path } or { endpoint, bucket }> <ttl ms> <folder> <marker folder> [pause]
 *
 * While one of its backups reads its source (from opening the snapshot to closing it, all inside the
 * lease) it holds `<marker folder>/inside`, created exclusively: a backup of another process running
 * at the same time finds it, and this process reports `overlap`. With `pause`, the first process
 * of the fleet to start a backup (it creates `<marker folder>/paused` exclusively) stops itself
 * (SIGSTOP) in the middle of it, holding the leases, for the test to kill.
 *
 * Prints one JSON line per settled run (`{ run }`), and `{ overlap }` once stopped by SIGTERM.
 */
import { open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Database, directory, files, s3, type Source } from '../../src/index.js';
import { MOTO_CREDENTIALS } from './moto.js';

const [spec = '{}', ttl = '', dir = '', markers = '', mode = ''] = process.argv.slice(2);
const target = JSON.parse(spec) as { path?: string; endpoint?: string; bucket?: string };
const to =
  target.path !== undefined
    ? directory({ path: target.path })
    : s3({ bucket: target.bucket ?? '', endpoint: target.endpoint ?? '', forcePathStyle: true, credentials: MOTO_CREDENTIALS });
const inner = files({ name: 'f', dir });

/** Creates `path` exclusively: false if it exists. */
async function claim(path: string): Promise<boolean> {
  const handle = await open(path, 'wx').catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
    return undefined;
  });
  await handle?.close();
  return handle !== undefined;
}

let overlap = false;
const marker = join(markers, 'inside');
const source: Source = {
  ...inner,
  async open(context) {
    const held = await claim(marker);
    if (!held) overlap = true;
    const snapshot = await inner.open(context);
    return {
      ...snapshot,
      estimate: () => snapshot.estimate(),
      entries: async function* () {
        if (mode === 'pause' && (await claim(join(markers, 'paused')))) process.kill(process.pid, 'SIGSTOP');
        yield* snapshot.entries();
      },
      async close() {
        await snapshot.close();
        if (held) await unlink(marker);
      },
    };
  },
};

const schedule = new Database({ sources: [source] }).schedule({ to, full: '2s', lease: { ttlMs: Number(ttl) } });
schedule.on('settled', (run) => process.stdout.write(`${JSON.stringify({ run })}\n`));
process.once('SIGTERM', () => {
  void schedule.stop().then(() => {
    process.stdout.write(`${JSON.stringify({ overlap })}\n`);
    process.exit(0);
  });
});
