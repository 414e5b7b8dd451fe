import { checkPeerInstalled, optionalPeer, type Peer } from '../util/peers.js';

const PEER: Peer = { name: 'openpgp', feature: 'Encryption and signing', install: ['openpgp'] };
/** openpgp.js, imported when a backup is first encrypted to keys, signed, decrypted with a key or checked. */
export const loadOpenpgp = optionalPeer(PEER, () => import('openpgp'));
/**
 * Fails with `MISSING_DEPENDENCY` unless openpgp.js is installed, without importing it: compiling
 * it held the host's event loop for about 55 ms, and a passphrase needs it on the worker only.
 */
export const checkOpenpgpInstalled = (): void => checkPeerInstalled(PEER);
