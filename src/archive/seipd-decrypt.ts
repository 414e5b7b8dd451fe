/**
 * The data of a SEIPD v1 packet (RFC 4880 §5.13) decrypted here rather than by openpgp.js's
 * streaming `decrypt`, which copied every chunk several times in JavaScript (its CFB, the MDC's
 * input, the literal packet's framing) and held ~100 MB more on the OpenPGP worker. Here a chunk
 * is decrypted and hashed in one native call each, and the literal data is compacted in place in
 * the decrypted buffer, which then moves to the main thread uncopied.
 *
 * It reads what {@link SeipdEncryptor} writes and what GnuPG writes: a random prefix, one literal
 * data packet (new or old format, partial body lengths or not), an MDC packet. Anything else inside
 * (a compressed packet, a signature) is left to openpgp.js: see {@link startsWithLiteral}.
 */
import { createDecipheriv, createHash, timingSafeEqual, type Decipher, type Hash } from 'node:crypto';

/** openpgp.js's names of the ciphers decrypted here, and OpenSSL's for them in CFB mode. */
const CFB: Record<string, string> = { aes128: 'aes-128-cfb', aes192: 'aes-192-cfb', aes256: 'aes-256-cfb' };
const BLOCK_SIZE = 16;
/** The random prefix: a block and its last two octets repeated. */
const PREFIX_BYTES = BLOCK_SIZE + 2;
const LITERAL = 11;
/** The MDC packet: its header (new format, tag 19, 20 octets) and the SHA-1. */
const MDC_HEADER = [0xd3, 0x14] as const;
const SHA1_BYTES = 20;

/** The ciphertext octets {@link startsWithLiteral} needs: the prefix and the first packet's tag. */
export const LITERAL_PROBE_BYTES = PREFIX_BYTES + 1;

/** Whether `algorithm` (openpgp.js's name of a session key's cipher) is one decrypted here. */
export function decryptsHere(algorithm: string | null | undefined): boolean {
  return algorithm != null && algorithm in CFB;
}

/** Whether the message's first `LITERAL_PROBE_BYTES` of ciphertext decrypt to a prefix followed by a literal data packet's tag. */
export function startsWithLiteral(algorithm: string, key: Uint8Array, head: Uint8Array): boolean {
  if (head.length < LITERAL_PROBE_BYTES) return false;
  const plain = createDecipheriv(CFB[algorithm]!, key, Buffer.alloc(BLOCK_SIZE)).update(head.subarray(0, LITERAL_PROBE_BYTES));
  return literalTag(plain[PREFIX_BYTES]!) !== undefined;
}

/** A literal packet's tag octet: its format and, for the old one, the size of its length field; undefined for any other packet. */
function literalTag(octet: number): { old: boolean; lengthBytes: number } | undefined {
  if (octet === (0xc0 | LITERAL)) return { old: false, lengthBytes: 0 };
  // Old format with a definite length (0-2); 3, an indeterminate one, cannot end before the MDC.
  if ((octet & 0xc0) === 0x80 && ((octet >> 2) & 0x0f) === LITERAL && (octet & 3) !== 3) return { old: true, lengthBytes: 2 ** (octet & 3) };
  return undefined;
}

type State =
  | { at: 'prefix'; left: number }
  | { at: 'tag' }
  | { at: 'length'; octets: number[]; old: boolean; lengthBytes: number }
  | { at: 'body'; left: number; partial: boolean }
  | { at: 'mdc'; octets: number };

/** Decrypts a SEIPD v1 packet's body (after its version octet), chunk by chunk, into the literal data. */
export class SeipdDecryptor {
  readonly #decipher: Decipher;
  readonly #mdc: Hash = createHash('sha1');
  readonly #digest = Buffer.alloc(SHA1_BYTES);
  #state: State = { at: 'prefix', left: PREFIX_BYTES };
  /** Of the literal body: the octets of its own header (format, name, date) still to skip; -2 before the name's length is read. */
  #literalHead = -2;

  constructor(algorithm: string, key: Uint8Array) {
    const cipher = CFB[algorithm];
    if (!cipher) throw new Error(`No SEIPD v1 decryption here with the cipher ${algorithm}`);
    this.#decipher = createDecipheriv(cipher, key, Buffer.alloc(BLOCK_SIZE));
  }

  /**
   * Decrypts `ciphertext` and returns the literal data in it, a view at the start of a buffer of
   * its own (the decrypted buffer, the data moved to its front); undefined when it holds none.
   */
  update(ciphertext: Uint8Array): Buffer | undefined {
    const plain = this.#decipher.update(ciphertext);
    // Parsed first, then hashed (up to the MDC's own hash), then the data moved to the front.
    const data: Array<[number, number]> = [];
    const before = this.#state;
    let hashEnd = before.at === 'mdc' && before.octets >= MDC_HEADER.length ? 0 : plain.length;
    for (let at = 0; at < plain.length; ) {
      const state = this.#state;
      switch (state.at) {
        case 'prefix': {
          const take = Math.min(state.left, plain.length - at);
          at += take;
          state.left -= take;
          if (state.left === 0) this.#state = { at: 'tag' };
          break;
        }
        case 'tag': {
          const tag = literalTag(plain[at++]!);
          if (!tag) throw new Error('The encrypted data holds no literal data packet');
          this.#state = { at: 'length', octets: [], ...tag };
          break;
        }
        case 'length': {
          state.octets.push(plain[at++]!);
          const length = bodyLength(state);
          if (length) this.#state = { at: 'body', ...length };
          break;
        }
        case 'body': {
          const take = Math.min(state.left, plain.length - at);
          const start = at + this.#skipLiteralHead(plain, at, take);
          if (start < at + take) data.push([start, at + take]);
          at += take;
          state.left -= take;
          if (state.left === 0) this.#state = state.partial ? { at: 'length', octets: [], old: false, lengthBytes: 0 } : { at: 'mdc', octets: 0 };
          break;
        }
        case 'mdc': {
          const octet = plain[at]!;
          if (state.octets < MDC_HEADER.length) {
            if (octet !== MDC_HEADER[state.octets]) throw new Error('The literal data is not followed by a modification detection code');
          } else if (state.octets < MDC_HEADER.length + SHA1_BYTES) {
            // The MDC hashes its own header, and not the hash.
            if (state.octets === MDC_HEADER.length) hashEnd = at;
            this.#digest[state.octets - MDC_HEADER.length] = octet;
          } else {
            throw new Error('The encrypted data goes on after its modification detection code');
          }
          state.octets += 1;
          at += 1;
          break;
        }
      }
    }
    this.#mdc.update(plain.subarray(0, hashEnd));
    let kept = 0;
    for (const [start, end] of data) {
      if (start !== kept) plain.copyWithin(kept, start, end);
      kept += end - start;
    }
    return kept > 0 ? plain.subarray(0, kept) : undefined;
  }

  /** Checks the message ended with its MDC, and that the MDC matches: tampering or truncation throws. */
  final(): void {
    this.#decipher.final();
    const state = this.#state;
    if (state.at !== 'mdc' || state.octets !== MDC_HEADER.length + SHA1_BYTES) throw new Error('The encrypted data ends before its modification detection code');
    if (!timingSafeEqual(this.#mdc.digest(), this.#digest)) throw new Error('Modification detected: the encrypted data does not match its modification detection code');
  }

  /** Skips the literal body's own header among `take` octets at `at`; returns how many of them it was. */
  #skipLiteralHead(plain: Buffer, at: number, take: number): number {
    let offset = 0;
    while (this.#literalHead !== 0 && offset < take) {
      if (this.#literalHead === -2) this.#literalHead = -1; // the format octet
      else if (this.#literalHead === -1) this.#literalHead = plain[at + offset]! + 4; // the name's length, then the name and the date
      else this.#literalHead -= 1;
      offset += 1;
    }
    return offset;
  }
}

/** A body length once its octets are all read (RFC 4880 §4.2.1, §4.2.2); undefined while more are needed. */
function bodyLength({ octets, old, lengthBytes }: { octets: number[]; old: boolean; lengthBytes: number }): { left: number; partial: boolean } | undefined {
  if (old) return octets.length < lengthBytes ? undefined : { left: octets.reduce((value, octet) => value * 256 + octet, 0), partial: false };
  const first = octets[0]!;
  if (first < 192) return { left: first, partial: false };
  if (first < 224) return octets.length < 2 ? undefined : { left: ((first - 192) << 8) + octets[1]! + 192, partial: false };
  if (first < 255) return { left: 2 ** (first & 0x1f), partial: true };
  return octets.length < 5 ? undefined : { left: octets.slice(1).reduce((value, octet) => value * 256 + octet, 0), partial: false };
}
