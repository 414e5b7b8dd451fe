/**
 * A real FTP server for the FTP tests: Debian's vsftpd (/usr/sbin/vsftpd), started by the suite on a
 * free port of 127.0.0.1 with its own config, a self-signed certificate for explicit FTPS, and one
 * virtual user whose password it checks through PAM (pam_userdb, with a Berkeley DB file made by
 * Perl's DB_File, as vsftpd takes no password file of its own). vsftpd runs as root, and so must
 * the tests: it needs PAM, and the PAM service file goes to /etc/pam.d (removed by `stop`).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { acceptsConnections, freePort, waitUntilServing } from './ports.js';
import { serverProcess } from './process.js';

const execFileAsync = promisify(execFile);
const VSFTPD = '/usr/sbin/vsftpd';

export interface Ftpd {
  host: string;
  port: number;
  user: string;
  password: string;
  /** The server's self-signed certificate (PEM), to trust with `ca`. */
  certificate: string;
  /** A fresh empty folder on the server, as an absolute path. */
  folder(): Promise<string>;
  /** Kills the server and every session it serves, as a crash of the host would; its files stay. */
  kill(): Promise<void>;
  /** Kills the server and starts it again on the same port, with the same files and user. */
  restart(): Promise<void>;
  /** Kills it and removes its files and its PAM service. */
  stop(): Promise<void>;
}

let servers = 0;
let folders = 0;

/**
 * `maxRate`: bytes per second each session may transfer, so that a test can act while an upload
 * is under way; `tls: false`: a server that offers no FTPS; `tlsOnly`: one that takes no login
 * without it.
 */
export async function startFtpd({ maxRate, tls = true, tlsOnly = false }: { maxRate?: number; tls?: boolean; tlsOnly?: boolean } = {}): Promise<Ftpd> {
  if (process.getuid?.() !== 0) throw new Error('the FTP tests start vsftpd, which checks passwords through PAM: run them as root');
  const dir = await mkdtemp(join(tmpdir(), 'backupkit-ftpd-'));
  await chmod(dir, 0o755); // vsftpd's unprivileged helper (nobody) looks into it
  const user = 'backup';
  const password = randomBytes(12).toString('hex');
  const service = `backupkit-test-ftp-${process.pid}-${++servers}`;
  const pamFile = join('/etc/pam.d', service);
  const port = await freePort();
  // Passive transfers take ports from a range of their own; vsftpd tries another when one is taken.
  const passive = 20_000 + Math.floor(Math.random() * 40_000);
  await mkdir(join(dir, 'data'));
  await mkdir(join(dir, 'empty')); // vsftpd's secure_chroot_dir: empty, not writable by others
  await execFileAsync('perl', ['-MDB_File', '-MFcntl', '-e', 'tie my %h, "DB_File", $ARGV[0], O_RDWR|O_CREAT, 0600, $DB_HASH or die "$!\\n"; $h{$ARGV[1]} = $ARGV[2]; untie %h', join(dir, 'users.db'), user, password]);
  await writeFile(pamFile, `auth required pam_userdb.so db=${join(dir, 'users')}\naccount required pam_permit.so\n`);
  await execFileAsync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')]);
  const config = [
    'listen=YES',
    'listen_address=127.0.0.1',
    `listen_port=${port}`,
    'background=NO',
    'anonymous_enable=NO',
    'local_enable=YES',
    'write_enable=YES',
    'local_umask=077',
    // The virtual user works as the user running the tests, in the folder the tests read.
    'guest_enable=YES',
    `guest_username=${userInfo().username}`,
    'virtual_use_local_privs=YES',
    `local_root=${join(dir, 'data')}`,
    `pam_service_name=${service}`,
    'check_shell=NO',
    `secure_chroot_dir=${join(dir, 'empty')}`,
    'pasv_enable=YES',
    'pasv_address=127.0.0.1',
    `pasv_min_port=${passive}`,
    `pasv_max_port=${passive + 200}`,
    // Containers refuse the namespaces and the seccomp filter vsftpd would set up.
    'seccomp_sandbox=NO',
    'isolate=NO',
    'isolate_network=NO',
    'xferlog_enable=NO',
    `vsftpd_log_file=${join(dir, 'vsftpd.log')}`,
    // Explicit FTPS offered, and by default not required: the tests use both.
    `ssl_enable=${tls ? 'YES' : 'NO'}`,
    `rsa_cert_file=${join(dir, 'cert.pem')}`,
    `rsa_private_key_file=${join(dir, 'key.pem')}`,
    `force_local_logins_ssl=${tlsOnly ? 'YES' : 'NO'}`,
    `force_local_data_ssl=${tlsOnly ? 'YES' : 'NO'}`,
    ...(maxRate === undefined ? [] : [`local_max_rate=${maxRate}`, `anon_max_rate=${maxRate}`]),
  ];
  await writeFile(join(dir, 'vsftpd.conf'), `${config.join('\n')}\n`);
  const removeFiles = async () => {
    await rm(pamFile, { force: true });
    await rm(dir, { recursive: true, force: true });
  };
  /** Starts vsftpd on `port` and waits until it accepts connections. */
  const launch = async () => {
    const started: ChildProcess = spawn(VSFTPD, [join(dir, 'vsftpd.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let errors = '';
    started.stderr?.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    started.on('error', (error) => (errors += error.message));
    const listening = () => acceptsConnections(port);
    await waitUntilServing(listening, () => started.exitCode !== null || errors !== '', `${VSFTPD} on port ${port}`).catch((error: unknown) => {
      started.kill();
      throw new Error(`${(error as Error).message}: ${errors} (the FTP tests need Debian's vsftpd)`);
    });
    return started;
  };
  const server = await serverProcess(launch, removeFiles);
  return {
    host: '127.0.0.1',
    port,
    user,
    password,
    certificate: await readFile(join(dir, 'cert.pem'), 'utf8'),
    async folder() {
      const folder = join(dir, 'data', `f${++folders}`);
      await mkdir(folder);
      return folder;
    },
    kill: server.kill,
    restart: server.restart,
    stop: server.stop,
  };
}
