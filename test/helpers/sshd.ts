/**
 * A real OpenSSH server for the SFTP tests: Debian's `openssh-server` (/usr/sbin/sshd), started
 * by the suite on a free port of 127.0.0.1 with its own host key, client key, authorized_keys and
 * config file in a temporary folder, serving SFTP to the user running the tests.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { acceptsConnections, freePort, waitUntilServing } from './ports.js';
import { serverProcess } from './process.js';

const execFileAsync = promisify(execFile);
const SSHD = '/usr/sbin/sshd';

export interface Sshd {
  host: string;
  port: number;
  username: string;
  /** The client's private key (OpenSSH format), authorized on the server. */
  privateKey: string;
  /** The server's host public key line, `ssh-ed25519 AAAA...`. */
  hostKey: string;
  /** A known_hosts file that names this server (`[127.0.0.1]:port ssh-ed25519 ...`). */
  knownHosts: string;
  /** A fresh empty folder on the server, as an absolute path. */
  folder(): Promise<string>;
  /** Makes another key pair: its private key, not authorized on the server. */
  otherKey(): Promise<string>;
  /** Kills the server and every session it serves, as a crash of the host would; its files stay. */
  kill(): Promise<void>;
  /** Freezes the server and its sessions (SIGSTOP): connections stay open, nothing is answered. */
  freeze(): Promise<void>;
  /** Lets a frozen server and its sessions run again (SIGCONT). */
  thaw(): Promise<void>;
  /** Kills the server and starts it again on the same port, with the same host key and users. */
  restart(): Promise<void>;
  /** Kills it and removes its files. */
  stop(): Promise<void>;
}

async function keyPair(dir: string, name: string): Promise<{ privateKey: string; publicKey: string; path: string }> {
  const path = join(dir, name);
  await execFileAsync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', path]);
  return { path, privateKey: await readFile(path, 'utf8'), publicKey: (await readFile(`${path}.pub`, 'utf8')).trim() };
}

let folders = 0;

export async function startSshd(): Promise<Sshd> {
  const dir = await mkdtemp(join(tmpdir(), 'backupkit-sshd-'));
  const port = await freePort();
  const host = await keyPair(dir, 'host_ed25519');
  const client = await keyPair(dir, 'client_ed25519');
  await writeFile(join(dir, 'authorized_keys'), `${client.publicKey}\n`);
  const config = [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${host.path}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    'PidFile none',
    'StrictModes no',
    'PermitRootLogin prohibit-password',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'Subsystem sftp internal-sftp',
    'LogLevel ERROR',
  ];
  await writeFile(join(dir, 'sshd_config'), `${config.join('\n')}\n`);
  await mkdir('/run/sshd', { recursive: true }); // sshd's privilege separation folder, missing until its service first ran
  /** Starts sshd on `port` and waits until it accepts connections. */
  const launch = async () => {
    const started: ChildProcess = spawn(SSHD, ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let errors = '';
    started.stderr?.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    const listening = () => acceptsConnections(port);
    await waitUntilServing(listening, () => started.exitCode !== null, `${SSHD} on port ${port}`).catch((error: unknown) => {
      started.kill();
      throw new Error(`${(error as Error).message}: ${errors} (the SFTP tests need Debian's openssh-server)`);
    });
    return started;
  };
  const server = await serverProcess(launch, () => rm(dir, { recursive: true, force: true }));
  const [keyType, keyData] = host.publicKey.split(' ') as [string, string];
  const knownHosts = join(dir, 'known_hosts');
  await writeFile(knownHosts, `[127.0.0.1]:${port} ${keyType} ${keyData}\n`);
  return {
    host: '127.0.0.1',
    port,
    username: userInfo().username,
    privateKey: client.privateKey,
    hostKey: `${keyType} ${keyData}`,
    knownHosts,
    async folder() {
      const folder = join(dir, 'data', `f${++folders}`);
      await mkdir(folder, { recursive: true });
      return folder;
    },
    async otherKey() {
      return (await keyPair(dir, `other_${++folders}`)).privateKey;
    },
    kill: server.kill,
    freeze: () => server.signalAll('SIGSTOP'),
    thaw: () => server.signalAll('SIGCONT'),
    restart: server.restart,
    stop: server.stop,
  };
}
