import type { DestinationKind } from '../../types.js';
import { memory } from './index.js';

/** The in-memory destination kind: no URL, as it lives only as long as the process; `{ "kind": "memory" }` in a JavaScript config. */
export const memoryKind: DestinationKind<Record<string, never>> = {
  kind: 'memory',
  schemes: [],
  create: () => memory(),
};
