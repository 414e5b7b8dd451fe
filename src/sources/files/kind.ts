import { resolve } from 'node:path';
import type { SourceKind } from '../../types.js';
import { files, filesRestorer, type FilesSourceOptions, type FilesTarget } from './index.js';

/** The files source kind: `--files name=dir`, `{ "kind": "files", "name": ..., "dir": ... }`. */
export const filesKind: SourceKind<FilesTarget, FilesSourceOptions> = {
  kind: 'files',
  restorer: filesRestorer,
  source: files,
  pathFields: ['dir'],
  cli: {
    value: 'dir',
    sourceHelp: 'a folder and everything under it',
    targetHelp: 'restore the files source <name> into this folder',
    source: (name, value, { cwd }) => files({ name, dir: resolve(cwd, value) }),
    target: (_name, value, { cwd }) => ({ dir: resolve(cwd, value) }),
  },
  describeTarget: ({ dir }) => dir,
};
