/**
 * The SEIPD v1 decryptor reads every framing of the literal data packet that OpenPGP allows and
 * GnuPG or backupkit write, split anywhere between chunks, and refuses tampering and truncation.
 */
import assert from 'node:assert/strict';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { SeipdDecryptor, startsWithLiteral } from '../../src/archive/seipd-decrypt.js';

const KEY = randomBytes(32);

/** A new-format length (RFC 4880 §4.2.2), one, two or five octets. */
function newLength(length: number): Buffer {
  if (length < 192) return Buffer.from([length]);
  if (length < 8384) return Buffer.from([((length - 192) >> 8) + 192, (length - 192) & 0xff]);
  const five = Buffer.alloc(5, 0xff);
  five.writeUInt32BE(length, 1);
  return five;
}

type Framing = 'new' | 'partial' | 'old-1' | 'old-2' | 'old-4';

/** The literal data packet of `data` (named `name`) framed as asked: partial parts of 512 octets, then the rest. */
function literalPacket(data: Buffer, name: string, framing: Framing): Buffer {
  const body = Buffer.concat([Buffer.from([0x62, name.length]), Buffer.from(name), Buffer.from([0, 0, 0, 0]), data]);
  if (framing === 'new') return Buffer.concat([Buffer.from([0xcb]), newLength(body.length), body]);
  if (framing === 'partial') {
    const parts: Buffer[] = [Buffer.from([0xcb])];
    let at = 0;
    for (; body.length - at > 512; at += 512) parts.push(Buffer.from([0xe0 + 9]), body.subarray(at, at + 512));
    parts.push(newLength(body.length - at), body.subarray(at));
    return Buffer.concat(parts);
  }
  const octets = { 'old-1': 1, 'old-2': 2, 'old-4': 4 }[framing];
  const length = Buffer.alloc(octets);
  length.writeUIntBE(body.length, 0, octets);
  return Buffer.concat([Buffer.from([0x80 | (11 << 2) | Math.log2(octets)]), length, body]);
}

/** A SEIPD v1 packet's body (after its version octet): CFB over a prefix, the literal packet and the MDC. */
function seipdBody(literal: Buffer): Buffer {
  const prefix = randomBytes(16);
  const head = Buffer.concat([prefix, prefix.subarray(14), literal, Buffer.from([0xd3, 0x14])]);
  const plain = Buffer.concat([head, createHash('sha1').update(head).digest()]);
  return createCipheriv('aes-256-cfb', KEY, Buffer.alloc(16)).update(plain);
}

/** Decrypts `ciphertext` given in pieces cut at `cuts`. */
function decryptInPieces(ciphertext: Buffer, cuts: readonly number[]): Buffer {
  const decryptor = new SeipdDecryptor('aes256', KEY);
  const out: Buffer[] = [];
  let from = 0;
  for (const cut of [...cuts, ciphertext.length]) {
    const data = decryptor.update(ciphertext.subarray(from, cut));
    if (data) out.push(Buffer.from(data));
    from = cut;
  }
  decryptor.final();
  return Buffer.concat(out);
}

describe('SEIPD v1 decryption', () => {
  const framings: Framing[] = ['new', 'partial', 'old-1', 'old-2', 'old-4'];

  it('reads every framing of the literal packet, cut between chunks anywhere', () => {
    for (const framing of framings) {
      for (const size of framing === 'old-1' ? [0, 1, 200] : framing === 'old-2' ? [0, 300, 8384, 60_000] : [0, 1, 191, 192, 505, 506, 2000, 8383, 8384, 70_000]) {
        const data = randomBytes(size);
        const ciphertext = seipdBody(literalPacket(data, size % 2 ? 'name.tar' : '', framing));
        assert.ok(startsWithLiteral('aes256', KEY, ciphertext), `${framing} ${size}: probed as literal`);
        assert.ok(decryptInPieces(ciphertext, []).equals(data), `${framing} ${size}: one piece`);
        // Every cut within the first and last 600 octets (the headers, the first part boundaries, the MDC).
        for (let cut = 1; cut < ciphertext.length; cut += cut < 600 || cut > ciphertext.length - 600 ? 1 : 997) {
          assert.ok(decryptInPieces(ciphertext, [cut]).equals(data), `${framing} ${size}: cut at ${cut}`);
        }
        const single = Array.from({ length: Math.min(ciphertext.length - 1, 3000) }, (_, i) => i + 1);
        assert.ok(decryptInPieces(ciphertext, single).equals(data), `${framing} ${size}: octet by octet`);
      }
    }
  });

  it('refuses any flipped octet, a truncation, and data after the MDC', () => {
    const data = randomBytes(3000);
    for (const framing of framings.filter((f) => f !== 'old-1')) {
      const ciphertext = seipdBody(literalPacket(data, 'x', framing));
      for (let at = 0; at < ciphertext.length; at += at < 40 || at > ciphertext.length - 40 ? 1 : 101) {
        const flipped = Buffer.from(ciphertext);
        flipped[at] = (flipped[at] as number) ^ 0x04;
        assert.throws(() => decryptInPieces(flipped, [Math.floor(at / 2)]), Error, `${framing}: octet ${at} flipped`);
      }
      for (const cut of [1, 18, 19, 100, ciphertext.length - 22, ciphertext.length - 21, ciphertext.length - 1]) {
        assert.throws(() => decryptInPieces(ciphertext.subarray(0, cut), []), /ends before|modification/, `${framing}: cut to ${cut}`);
      }
    }
    const trailing = seipdBody(Buffer.concat([literalPacket(data, '', 'new')]));
    const longer = Buffer.concat([trailing, Buffer.alloc(1)]);
    assert.throws(() => decryptInPieces(longer, []), /goes on after/);
  });

  it('probes a packet other than literal data as not for it', () => {
    // A compressed data packet (tag 8), as gpg writes by default.
    const compressed = Buffer.concat([Buffer.from([0xc8, 3, 0]), Buffer.from('ab')]);
    assert.equal(startsWithLiteral('aes256', KEY, seipdBody(compressed)), false);
    assert.throws(() => decryptInPieces(seipdBody(compressed), []), /no literal data packet/);
  });
});
