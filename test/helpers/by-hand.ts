import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Runs the README's script restoring a chain of the files source `uploads` by hand, as it stands
 * there but for its archive names and target: `archives` oldest first, into `<cwd>/restored`.
 */
export async function restoreFilesChainByHand(archives: readonly string[], cwd: string): Promise<string> {
  const readme = await readFile(new URL('../../../README.md', import.meta.url), 'utf8');
  const script = /```sh\n(# the chain's archives, oldest first[^]*?)```/.exec(readme)?.[1];
  if (!script || !/^set -- .*$/m.test(script) || !script.includes('/srv/app/uploads')) throw new Error('The README no longer holds the script restoring a chain by hand');
  const ours = script.replace(/^set -- .*$/m, `set -- ${archives.map((archive) => `'${archive}'`).join(' ')}`).replace('/srv/app/uploads', 'restored');
  await run('bash', ['-euo', 'pipefail', '-c', ours], { cwd });
  return join(cwd, 'restored');
}
