/**
 * Every ```ts snippet in README.md and docs/ (not docs/api, which is generated) compiles as
 * written, and every ```js one (config files) type-checks too: each is written to a file of its
 * own and checked by tsc, strict, against the package's published types (`import ... from 'backupkit'` resolves through package.json's
 * exports to dist/, as in a user's project).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
/** Inside the package, so that `backupkit` resolves to the package itself by its name. */
const OUT = join(ROOT, 'build', 'snippets');

interface Snippet {
  /** `docs/guides/restore.md:5`: the page and the line of the opening fence. */
  readonly origin: string;
  readonly code: string;
  readonly language: 'ts' | 'js';
}

async function markdownPages(): Promise<string[]> {
  const docs = (await readdir(join(ROOT, 'docs'), { recursive: true })).filter((file) => file.endsWith('.md') && !file.startsWith('api'));
  return ['README.md', ...docs.map((file) => join('docs', file))];
}

function snippetsOf(page: string, markdown: string): Snippet[] {
  const snippets: Snippet[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const language = /^```(ts|js)$/.exec(lines[i]!.trim())?.[1] as Snippet['language'] | undefined;
    if (language === undefined) continue;
    const end = lines.findIndex((line, at) => at > i && line.trim() === '```');
    assert.ok(end > i, `${page}:${i + 1}: a code block is never closed`);
    snippets.push({ origin: `${page}:${i + 1}`, code: lines.slice(i + 1, end).join('\n'), language });
    i = end;
  }
  return snippets;
}

describe('code snippets in the docs', () => {
  it('every ```ts and ```js snippet in README.md and docs/ type-checks against the package, as written', async () => {
    await rm(OUT, { recursive: true, force: true });
    await mkdir(OUT, { recursive: true });
    const origins = new Map<string, string>();
    for (const page of await markdownPages()) {
      for (const snippet of snippetsOf(page, await readFile(join(ROOT, page), 'utf8'))) {
        const file = `${snippet.origin.replace(/[/:.]/g, '_')}.${snippet.language}`;
        origins.set(file, snippet.origin);
        await writeFile(join(OUT, file), `${snippet.code}\n`);
      }
    }
    assert.ok(origins.size >= 15, `the snippets were found (${origins.size})`);
    // The compiler options of a strict user project; the snippets are modules (ESM, top-level await).
    const tsconfig = {
      compilerOptions: { target: 'ES2022', lib: ['ES2023'], module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: true, types: ['node'], allowJs: true, checkJs: true },
      include: ['*.ts', '*.js'],
    };
    await writeFile(join(OUT, 'tsconfig.json'), JSON.stringify(tsconfig));
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const errors = await run(process.execPath, [tsc, '-p', OUT, '--pretty', 'false'], { cwd: OUT, maxBuffer: 16 * 1024 * 1024 }).then(
      () => '',
      (failure: { stdout: string }) => failure.stdout,
    );
    // Names each error by its page and line in the docs, not by the generated file.
    const located = errors.replace(/^([^(\s]+\.[jt]s)\((\d+),\d+\)/gm, (_, file: string, line: string) => {
      const [page, fence] = (origins.get(relative(OUT, join(OUT, file))) ?? `${file}:0`).split(/:(?=\d+$)/);
      return `${page}:${Number(fence) + Number(line)}`;
    });
    assert.equal(located, '', 'snippets that do not compile');
  });
});
