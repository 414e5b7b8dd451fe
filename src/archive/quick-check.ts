/**
 * The OpenPGP "quick check" (RFC 4880 §5.13, RFC 9580 §5.13.2): a SEIPD v1 packet's plaintext
 * starts with a random block whose last two bytes are repeated. gpg checks them to say "bad
 * session key"; openpgp.js does not, so a wrong passphrase that happens to decrypt its session key
 * packet into a plausible key (about 2 tries in 256) decrypts the archive into noise.
 */
import { createDecipheriv, getCipherInfo } from 'node:crypto';
import * as openpgp from 'openpgp';

/** OpenSSL's names of the openpgp.js ciphers it runs in CFB mode (OpenSSL 3 lacks CAST5, Blowfish, IDEA and Twofish). */
const CFB_CIPHERS: Partial<Record<openpgp.enums.symmetricNames, string>> = {
  aes128: 'aes-128-cfb',
  aes192: 'aes-192-cfb',
  aes256: 'aes-256-cfb',
  tripledes: 'des-ede3-cfb',
};

/** The largest cipher block (16 bytes), its two repeated bytes, and the first octet after them (see `startsWithLiteral`). */
const PREFIX_BYTES = 19;

/** What openpgp.js keeps of a SEIPD packet it read, not in its public types. */
interface SeipdFields {
  version?: unknown;
  encrypted?: unknown;
}

/**
 * The first ciphertext bytes of the message's SEIPD v1 packet, read without consuming them (the
 * packet's stream is replaced by one that replays them); undefined for any other packet.
 */
export async function quickCheckPrefix(message: openpgp.Message<ReadableStream<Uint8Array>>): Promise<Uint8Array | undefined> {
  const packet = message.packets.find((candidate) => candidate instanceof openpgp.SymEncryptedIntegrityProtectedDataPacket) as SeipdFields | undefined;
  if (packet?.version !== 1) return undefined;
  const { encrypted } = packet;
  if (encrypted instanceof Uint8Array) return encrypted.subarray(0, PREFIX_BYTES);
  if (!(encrypted instanceof ReadableStream)) return undefined;
  const { head, stream } = await peek(encrypted as ReadableStream<Uint8Array>, PREFIX_BYTES);
  packet.encrypted = stream;
  return head;
}

/**
 * Whether a session key decrypts the prefix into its repeated bytes: `wrong` is certain (or the
 * first bytes are damaged), `fits` wrong once in 65,536, `unknown` for a cipher OpenSSL lacks.
 */
export function quickCheck(key: openpgp.DecryptedSessionKey, prefix: Uint8Array | undefined): 'fits' | 'wrong' | 'unknown' {
  const cipher = key.algorithm ? CFB_CIPHERS[key.algorithm] : undefined;
  const info = cipher ? getCipherInfo(cipher) : undefined;
  if (!cipher || !info?.ivLength || !prefix) return 'unknown';
  const block = info.ivLength;
  if (key.data.length !== info.keyLength || prefix.length < block + 2) return 'wrong';
  const plain = createDecipheriv(cipher, key.data, Buffer.alloc(block)).update(prefix.subarray(0, block + 2));
  return plain[block - 2] === plain[block] && plain[block - 1] === plain[block + 1] ? 'fits' : 'wrong';
}

/** Reads a stream's first bytes and gives back a stream that still starts with them. */
async function peek(input: ReadableStream<Uint8Array>, bytes: number): Promise<{ head: Uint8Array; stream: ReadableStream<Uint8Array> }> {
  const reader = input.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  let ended = false;
  while (size < bytes && !ended) {
    const next = await reader.read();
    if (next.done) ended = true;
    else {
      chunks.push(next.value);
      size += next.value.length;
    }
  }
  const head = Buffer.concat(chunks);
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      if (head.length > 0) controller.enqueue(head);
      if (ended) controller.close();
    },
    async pull(controller) {
      const next = await reader.read();
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    cancel: (reason) => reader.cancel(reason),
  });
  return { head, stream };
}
