import { optionalPeer } from '../util/peers.js';

/** openpgp.js, imported when a backup is first encrypted, signed, decrypted or checked. */
export const loadOpenpgp = optionalPeer({ name: 'openpgp', feature: 'Encryption and signing', install: ['openpgp'] }, () => import('openpgp'));
