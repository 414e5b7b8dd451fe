import { Readable } from 'node:stream';
import type { EntryType } from '../types.js';
import { copiedOut } from '../util/worker-channel.js';

/** What a header says about one entry. */
export interface TarHeader {
  /** Folders end in `/`. */
  name: string;
  type: EntryType;
  size: number;
  mode: number;
  /** Whole seconds since the epoch. */
  mtime: number;
  linkname?: string;
}

const BLOCK = 512;
const END_OF_TAR = Buffer.alloc(2 * BLOCK);
/**
 * Small pieces (headers, padding, tiny files) are copied side by side into chunks of this size and
 * pushed together: tar-stream pushed each as a chunk of its own through every stage of the
 * pipeline, three per file. Larger pieces go on as they are: copying the bodies of 20 KiB files
 * too (into fresh memory) cost as much main-thread CPU as it saved, and more garbage collections.
 */
const CHUNK = 1024 * 1024;
const COPY_BELOW = 4096;

const TYPE_FLAGS: Record<EntryType | 'pax-header', number> = { file: 0x30, symlink: 0x32, directory: 0x35, 'pax-header': 0x78 };
const ZEROS = '0000000000000000000';
const SEVENS = '7777777777777777777';
/** Headers are encoded here, then copied into the output (they are below `COPY_BELOW`): one buffer, not one per entry. */
const scratch = Buffer.alloc(BLOCK);

/**
 * The tar stream of an archive: ustar headers, with a PAX header before one whose name or link
 * target ustar cannot hold, byte for byte as tar-stream wrote them (archives made before read
 * and compare the same). The writer appends entries one at a time; `write` says, as a Writable
 * does, when to wait for {@link TarPack.drained}.
 */
export class TarPack extends Readable {
  /** Filled from `#start` to `#filled`; the bytes before `#start` are pushed already, and never written again. */
  #chunk: Buffer | undefined;
  #start = 0;
  #filled = 0;
  /** The reader asked for more since the last push that filled the buffer. */
  #wanted = true;
  #wake: { resolve: () => void; reject: (error: Error) => void } | undefined;

  constructor() {
    super({ highWaterMark: CHUNK });
  }

  /** Appends an entry's header; its body follows with {@link write}, then {@link pad}. */
  header(header: TarHeader): boolean {
    // tar-stream stored mode 0 as the type's default (the manifest keeps the real mode).
    const mode = header.mode || (header.type === 'directory' ? 0o755 : 0o644);
    const size = header.type === 'file' ? header.size : 0;
    const ustar = encodeUstar(header.name, header.type, size, mode, header.mtime, header.linkname);
    if (ustar) return this.#append(ustar);
    const pax = encodePax(header.name, header.linkname);
    const paxHeader = encodeUstar('PaxHeader', 'pax-header', pax.length, mode, header.mtime, header.linkname ? 'PaxHeader' : undefined) as Buffer;
    this.#append(paxHeader);
    this.#append(pax);
    this.pad(pax.length);
    return this.#append(encodeUstar('PaxHeader', header.type, size, mode, header.mtime, header.linkname ? 'PaxHeader' : undefined) as Buffer);
  }

  /** Appends body bytes; false once the reader has enough buffered: wait for {@link drained}. */
  write(bytes: Uint8Array): boolean {
    return this.#append(bytes);
  }

  /** Pads a body of `size` bytes to the next 512-byte block. */
  pad(size: number): boolean {
    const rest = size % BLOCK;
    return rest === 0 ? this.#wanted : this.#append(END_OF_TAR.subarray(0, BLOCK - rest));
  }

  /** Resolves once the reader wants more; rejects if the stream is torn down first. */
  drained(): Promise<void> {
    if (this.#wanted) return Promise.resolve();
    if (this.destroyed) return Promise.reject(this.errored ?? new Error('The tar stream was destroyed'));
    return new Promise((resolve, reject) => (this.#wake = { resolve, reject }));
  }

  /** Ends the archive: two zero blocks, then the end of the stream. */
  finalize(): void {
    this.#append(END_OF_TAR);
    this.#flush();
    this.push(null);
  }

  override _read(): void {
    this.#wanted = true;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.resolve();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const wake = this.#wake;
    this.#wake = undefined;
    this.#chunk = undefined;
    wake?.reject(error ?? new Error('The tar stream was destroyed'));
    callback(error);
  }

  #append(bytes: Uint8Array): boolean {
    if (this.destroyed) throw this.errored ?? new Error('The tar stream was destroyed');
    if (bytes.length >= COPY_BELOW) {
      this.#flush();
      this.#push(bytes);
      return this.#wanted;
    }
    if (this.#chunk && this.#filled + bytes.length > CHUNK) {
      this.#flush();
      this.#chunk = undefined;
    }
    if (!this.#chunk) {
      this.#chunk = Buffer.allocUnsafeSlow(CHUNK);
      this.#start = this.#filled = 0;
    }
    this.#chunk.set(bytes, this.#filled);
    this.#filled += bytes.length;
    copiedOut(bytes.buffer, bytes.length);
    return this.#wanted;
  }

  /** Pushes what was appended since the last push; the rest of the chunk is filled on. */
  #flush(): void {
    if (!this.#chunk || this.#filled === this.#start) return;
    const filled = this.#chunk.subarray(this.#start, this.#filled);
    this.#start = this.#filled;
    this.#push(filled);
  }

  #push(bytes: Uint8Array): void {
    if (!this.push(bytes)) this.#wanted = false;
  }
}

/** A ustar header (in {@link scratch}, valid until the next), or `undefined` when the name or link target does not fit (or is not ASCII). */
function encodeUstar(path: string, type: TarHeader['type'] | 'pax-header', size: number, mode: number, mtime: number, linkname: string | undefined): Buffer | undefined {
  let name = path;
  let prefix = '';
  if (Buffer.byteLength(name) !== name.length) return undefined;
  // The longest tail that fits goes in `name`, the folders before it in `prefix`.
  while (name.length > 100) {
    const slash = name.indexOf('/');
    if (slash === -1) return undefined;
    prefix += prefix ? `/${name.slice(0, slash)}` : name.slice(0, slash);
    name = name.slice(slash + 1);
  }
  if (prefix.length > 155) return undefined;
  if (linkname && Buffer.byteLength(linkname) > 100) return undefined;
  const block = scratch.fill(0);
  block.write(name, 0, 'latin1');
  block.write(octal(mode & 0o7777, 6), 100, 'latin1');
  block.write(octal(0, 6), 108, 'latin1'); // uid
  block.write(octal(0, 6), 116, 'latin1'); // gid
  if (size.toString(8).length > 11) binarySize(size, block, 124);
  else block.write(octal(size, 11), 124, 'latin1');
  block.write(octal(mtime | 0, 11), 136, 'latin1');
  block[156] = TYPE_FLAGS[type];
  if (linkname) block.write(linkname, 157);
  block.write('ustar\x0000', 257, 'latin1');
  block.write(octal(0, 6), 329, 'latin1'); // device major
  block.write(octal(0, 6), 337, 'latin1'); // and minor
  if (prefix) block.write(prefix, 345, 'latin1');
  block.write(octal(checksum(block), 6), 148, 'latin1');
  return block;
}

/** A PAX extended header's records: `<length> path=<name>\n`, and the link target's. */
function encodePax(name: string, linkname: string | undefined): Buffer {
  let records = '';
  if (name) records += paxRecord(`path=${name}`);
  if (linkname) records += paxRecord(`linkpath=${linkname}`);
  return Buffer.from(records);
}

/** A record counts its own length, digits included. */
function paxRecord(field: string): string {
  const text = ` ${field}\n`;
  const length = Buffer.byteLength(text);
  let digits = String(length).length;
  if (length + digits >= 10 ** digits) digits += 1;
  return `${length + digits}${text}`;
}

/** `digits` octal digits and a space; all sevens when the value does not fit, as tar-stream did. */
function octal(value: number, digits: number): string {
  const text = value.toString(8);
  if (text.length > digits) return `${SEVENS.slice(0, digits)} `;
  return `${ZEROS.slice(0, digits - text.length)}${text} `;
}

/** Sizes of 8 GiB and more: base-256, flagged by the high bit. */
function binarySize(size: number, block: Buffer, offset: number): void {
  block[offset] = 0x80;
  let rest = size;
  for (let i = 11; i > 0; i--) {
    block[offset + i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
}

/** The header's byte sum, its checksum field counted as spaces. */
function checksum(block: Buffer): number {
  let sum = 8 * 0x20;
  for (let i = 0; i < 148; i++) sum += block[i] as number;
  for (let i = 156; i < BLOCK; i++) sum += block[i] as number;
  return sum;
}
