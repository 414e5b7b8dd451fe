import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DestinationKind } from '../../types.js';
import { parseUrl } from '../../util/url.js';
import { directory, type DirectoryOptions } from './index.js';

/** The folder destination kind: a plain path or a `file://` URL, `{ "kind": "directory", "path": ... }`. */
export const directoryKind: DestinationKind<DirectoryOptions> = {
  kind: 'directory',
  schemes: ['file:'],
  urlForm: 'file:///path',
  paths: true,
  fromSpec: (spec, cwd) => directory({ path: spec.startsWith('file:') ? fileURLToPath(parseUrl(spec, 'a folder URL')) : resolve(cwd, spec) }),
  create: directory,
  pathFields: ['path'],
};
