/**
 * Restores the newest backup of a folder destination into a target folder and prints its outcome
 * and how far the process's peak resident memory lies above its resident memory before the restore:
 * a peak, not a sample, so the figure does not depend on timing.
 */
import { readFileSync } from 'node:fs';
import { BackupError, Database, directory } from '../../src/index.js';

/**
 * The peak resident memory of this process image (Linux: VmHWM). Not resourceUsage().maxRSS, which
 * Linux carries over exec: it starts at the parent's resident size when the child was spawned.
 */
function peakResident(): number {
  const kib = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  if (kib === undefined) throw new Error('no VmHWM in /proc/self/status');
  return Number(kib) * 1024;
}

const [from = '', target = ''] = process.argv.slice(2);
const before = process.memoryUsage().rss;
let code = 'ok';
try {
  await Database.restore({ from: directory({ path: from }), targets: { f: { dir: target } } });
} catch (error) {
  code = error instanceof BackupError ? error.code : String(error);
}
process.stdout.write(`${JSON.stringify({ code, peakGrowth: peakResident() - before })}\n`);
