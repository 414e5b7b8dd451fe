import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
/** The repository's root, from build/test/helpers. */
export const ROOT = join(import.meta.dirname, '..', '..', '..');
/** The built `backupkit` binary, as the package ships it. */
export const BIN = join(ROOT, 'dist', 'cli', 'main.js');

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built binary in `cwd` with only PATH, HOME and `env`; resolves whatever its exit code. */
export async function cli(args: readonly string[], options: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<Run> {
  const env = { PATH: process.env['PATH'], HOME: process.env['HOME'], ...options.env };
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [BIN, ...args], { cwd: options.cwd, env, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

/** The JSON lines of a run's stdout. */
export function records(stdout: string): Array<{ type: string } & Record<string, unknown>> {
  return stdout
    .trim()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as { type: string } & Record<string, unknown>);
}
