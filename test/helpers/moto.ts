/**
 * A real S3-compatible server for the tests: moto_server on a free port of 127.0.0.1, started and
 * stopped by the suite. A missing moto_server fails the tests with a clear message.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort } from './ports.js';

export interface Moto {
  endpoint: string;
  client: S3Client;
  createBucket(): Promise<string>;
  /** Freezes the server (SIGSTOP): it still accepts connections, as the kernel does, and answers nothing. */
  freeze(): void;
  /** Lets a frozen server run again (SIGCONT). */
  thaw(): void;
  stop(): Promise<void>;
}

export const MOTO_CREDENTIALS = { accessKeyId: 'backupkit', secretAccessKey: 'backupkit' };

let buckets = 0;

export async function startMoto(): Promise<Moto> {
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  let child: ChildProcess;
  try {
    child = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
    await Promise.race([
      once(child, 'spawn'),
      once(child, 'error').then(([error]) => {
        throw error;
      }),
    ]);
  } catch (cause) {
    throw new Error('moto_server could not be started: the S3 tests need it (the Python package moto, `pip install "moto[server]"`)', { cause });
  }
  for (let attempt = 0; ; attempt++) {
    try {
      const response = await fetch(`${endpoint}/`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (attempt > 200 || child.exitCode !== null) {
      child.kill();
      throw new Error(`moto_server did not answer on ${endpoint}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const client = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials: MOTO_CREDENTIALS });
  return {
    endpoint,
    client,
    async createBucket() {
      const bucket = `backupkit-test-${process.pid}-${++buckets}`;
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      return bucket;
    },
    freeze() {
      child.kill('SIGSTOP');
    },
    thaw() {
      child.kill('SIGCONT');
    },
    async stop() {
      client.destroy();
      if (child.exitCode === null) {
        child.kill('SIGCONT'); // a frozen server would not act on SIGTERM
        child.kill();
        await once(child, 'exit');
      }
    },
  };
}
