/**
 * A real Azure Blob Storage server for the tests: Azurite, Microsoft's emulator (the npm package
 * `azurite`, a devDependency), on a free port of 127.0.0.1 with its data in a temporary folder,
 * started and stopped by the suite.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { freePort, waitUntilServing } from './ports.js';
import { serverProcess } from './process.js';

/** Azurite's one account and its published key: not a secret. */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface Azurite {
  endpoint: string;
  /** The connection string of the account, with `key` instead of the right one if given. */
  connectionString(key?: string): string;
  client: BlobServiceClient;
  /** A new empty container. */
  createContainer(): Promise<string>;
  /** Freezes the server (SIGSTOP): it still accepts connections, as the kernel does, and answers nothing. */
  freeze(): void;
  /** Lets a frozen server run again (SIGCONT). */
  thaw(): void;
  /** Kills the server, as a crash would; its data stays. */
  kill(): Promise<void>;
  /** Kills the server and starts it again on the same port, over the same data. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const AZURITE_BIN = join(import.meta.dirname, '..', '..', '..', 'node_modules', '.bin', 'azurite-blob');
let containers = 0;

export async function startAzurite(): Promise<Azurite> {
  const port = await freePort();
  const location = await mkdtemp(join(tmpdir(), 'backupkit-azurite-'));
  const endpoint = `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
  const args = ['--blobHost', '127.0.0.1', '--blobPort', String(port), '--location', location, '--skipApiVersionCheck', '--loose', '--silent'];
  /** Starts Azurite on `port` over the data in `location`, and waits until it serves. */
  const launch = async () => {
    const started: ChildProcess = spawn(process.execPath, [AZURITE_BIN, ...args], { stdio: 'ignore' });
    // Any answer, even a refusal of an unsigned request, means it is serving.
    await waitUntilServing(() => fetch(endpoint).then(() => true), () => started.exitCode !== null, `azurite-blob on port ${port} (${AZURITE_BIN})`).catch((error: unknown) => {
      started.kill();
      throw error;
    });
    return started;
  };
  // Killed with SIGKILL: on SIGTERM Azurite waits for idle keep-alive connections to close, minutes at times.
  const server = await serverProcess(launch, () => rm(location, { recursive: true, force: true }));
  const connectionString = (key = AZURITE_KEY) => `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${key};BlobEndpoint=${endpoint};`;
  const client = BlobServiceClient.fromConnectionString(connectionString());
  return {
    endpoint,
    connectionString,
    client,
    async createContainer() {
      const name = `backupkit-${process.pid}-${++containers}`;
      await client.getContainerClient(name).create();
      return name;
    },
    freeze: () => server.signal('SIGSTOP'),
    thaw: () => server.signal('SIGCONT'),
    kill: server.kill,
    restart: server.restart,
    stop: server.stop,
  };
}
