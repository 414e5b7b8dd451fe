/**
 * The published package, as `npm pack` would make it: the license ships, every relative link in
 * the README and the shipped docs lands on a shipped file, and no source map points at a file the
 * tarball lacks.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { before, describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');

/** The paths `npm pack` puts in the tarball, relative to the package root. */
async function packedFiles(): Promise<Set<string>> {
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 });
  const [pack] = JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>;
  return new Set(pack!.files.map((file) => file.path));
}

/** The targets of `[text](target)` links that stay inside the package, without their `#fragment`. */
function relativeLinks(markdown: string): string[] {
  const withoutCode = markdown.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  // `\](` is an escaped bracket in link text (api-documenter writes `[\[Symbol.hasInstance\](value)](...)`), not a link.
  return [...withoutCode.matchAll(/(?<!\\)\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)]
    .map((match) => match[1]!)
    .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target) && !target.startsWith('#'))
    .map((target) => decodeURIComponent(target.replace(/#.*$/, '')));
}

describe('the npm package', () => {
  let shipped: Set<string>;
  before(async () => (shipped = await packedFiles()));

  it('ships its license, README, docs and examples', () => {
    for (const file of ['LICENSE', 'README.md', 'package.json', 'docs/README.md', 'docs/CLI.md', 'dist/index.js', 'dist/cli/main.js']) {
      assert.ok(shipped.has(file), `${file} is in the tarball`);
    }
    assert.ok([...shipped].some((file) => file.startsWith('examples/')), 'examples/ is in the tarball');
  });

  it('every relative link in README.md and the shipped docs resolves to a shipped file or folder', async () => {
    const pages = [...shipped].filter((file) => file.endsWith('.md'));
    assert.ok(pages.length > 10, 'the docs are shipped');
    const broken: string[] = [];
    for (const page of pages) {
      for (const link of relativeLinks(await readFile(join(ROOT, page), 'utf8'))) {
        const target = posix.normalize(posix.join(posix.dirname(page), link)).replace(/\/$/, '');
        const isFolder = [...shipped].some((file) => file.startsWith(`${target}/`));
        if (!shipped.has(target) && !isFolder) broken.push(`${page}: ${link}`);
      }
    }
    assert.deepEqual(broken, []);
  });

  it('source maps in the tarball point only at shipped sources', async () => {
    const unshipped: string[] = [];
    for (const map of [...shipped].filter((file) => file.endsWith('.map'))) {
      const { sources } = JSON.parse(await readFile(join(ROOT, map), 'utf8')) as { sources: string[] };
      for (const source of sources) {
        const target = posix.normalize(posix.join(posix.dirname(map), source));
        if (!shipped.has(target)) unshipped.push(`${map}: ${source}`);
      }
    }
    assert.deepEqual(unshipped, []);
  });

  it('every file the package.json names (exports, types, bin) is shipped', async () => {
    const manifest = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, string | Record<string, string>>; types: string; bin: Record<string, string> };
    const named = [manifest.types, ...Object.values(manifest.bin), ...Object.values(manifest.exports).flatMap((entry) => (typeof entry === 'string' ? [entry] : Object.values(entry)))];
    for (const file of named) assert.ok(shipped.has(posix.normalize(file)), `${file} is in the tarball`);
  });
});
