import { execFile } from 'node:child_process';
import { chmod, chown, copyFile, readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
/** The uid and gid of `nobody`. */
const NOBODY = 65534;

/**
 * Runs the README's script restoring a chain of the files source `uploads` by hand, as it stands
 * there but for its archive names and target: `archives` oldest first, copied into `cwd` (an empty
 * folder), restored into `<cwd>/restored`. Run as root, it runs as `nobody` (through setpriv), as
 * most users would, so that read-only folders and modes are what an unprivileged tar makes of them;
 * `cwd`'s parent is then opened to everyone.
 */
export async function restoreFilesChainByHand(archives: readonly string[], cwd: string): Promise<string> {
  const readme = await readFile(new URL('../../../README.md', import.meta.url), 'utf8');
  const script = /```sh\n(# the chain's archives, oldest first[^]*?)```/.exec(readme)?.[1];
  if (!script || !/^set -- .*$/m.test(script) || !script.includes('/srv/app/uploads')) throw new Error('The README no longer holds the script restoring a chain by hand');
  for (const archive of archives) await copyFile(archive, join(cwd, basename(archive)));
  const ours = script.replace(/^set -- .*$/m, `set -- ${archives.map((archive) => `'${basename(archive)}'`).join(' ')}`).replace('/srv/app/uploads', 'restored');
  const shell = ['bash', '-euo', 'pipefail', '-c', ours];
  if (process.getuid?.() !== 0) {
    await run(shell[0] as string, shell.slice(1), { cwd });
  } else {
    await chmod(dirname(cwd), 0o755);
    await chown(cwd, NOBODY, NOBODY);
    for (const archive of archives) await chown(join(cwd, basename(archive)), NOBODY, NOBODY);
    await run('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', ...shell], { cwd });
  }
  return join(cwd, 'restored');
}
