import { once } from 'node:events';
import type { Destination, Upload } from '../../src/types.js';

/** Writes `bytes` in chunks through the upload's stream, respecting backpressure, then commits. */
export async function put(destination: Destination, name: string, bytes: Buffer, commit = true): Promise<Upload> {
  const upload = await destination.create(name);
  for (let offset = 0; offset < bytes.length; offset += 64 * 1024) {
    if (!upload.stream.write(bytes.subarray(offset, offset + 64 * 1024))) await once(upload.stream, 'drain');
  }
  const finished = once(upload.stream, 'finish');
  upload.stream.end();
  await finished;
  if (commit) await upload.commit();
  return upload;
}
