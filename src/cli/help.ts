import { fileURLToPath } from 'node:url';
import { sourceKinds } from '../kinds.js';
import { destinationForms } from './config.js';
import type { SourceKind, SourceKindCli } from '../types.js';

/** docs/CLI.md as installed: the package ships docs/ beside dist/. */
export const CLI_DOCS = fileURLToPath(new URL('../../docs/CLI.md', import.meta.url));

/** The source kinds the command line names, as `--<kind> name=value`: those registered when the command starts. */
export const CLI_KINDS = sourceKinds().filter((kind): kind is SourceKind & { readonly cli: SourceKindCli } => kind.cli !== undefined);

/** One line of options help, a line break in `help` continuing it on the next, aligned. */
function option(flag: string, help: string): string {
  return `  ${flag.padEnd(27)}  ${help.replaceAll('\n', `\n${' '.repeat(31)}`)}`;
}

/** Each kind's `--<kind> <name=value>` with `help`'s line, followed by the kind's own flags. */
function kindOptions(help: (cli: SourceKindCli) => string): string {
  return CLI_KINDS.flatMap(({ kind, cli }) => [
    option(`--${kind} <name=${cli.value}>`, help(cli)),
    ...Object.entries(cli.flags ?? {}).map(([flag, { value, help: flagHelp }]) => option(`--${flag} <${value}>`, flagHelp)),
  ]).join('\n');
}

const KIND_PAIRS = CLI_KINDS.map(({ kind, cli }) => `--${kind} name=${cli.value}`).join(' ');
const SCRATCH_OPTIONS = CLI_KINDS.flatMap(({ kind, cli }) => (cli.scratchServer ? [option(`--scratch-${kind} <${cli.value}>`, cli.scratchHelp ?? '')] : [])).join('\n');

const DESTINATION = destinationForms();

const COMMON = `Common options:
  --config <file>              options from a config file (default: backupkit.config.js, .mjs or .json
                               in this folder); flags win over it
  --json                       one JSON object per line (the default when stdout is not a terminal)
  --verbose                    print stack traces with errors
  -h, --help                   this help`;

const DECRYPTION = `Decryption (encrypted archives):
  --passphrase-file <file>     the passphrase, read from a file (one trailing newline is dropped);
                               or BACKUPKIT_PASSPHRASE in the environment
  --private-key-file <file>    an armoured OpenPGP private key; its passphrase in BACKUPKIT_KEY_PASSPHRASE`;

const WHICH_BACKUP = `  --from <dest>                where the backups are: ${DESTINATION}
                               (default: \`from\` or the first of \`to\` in the config file)
  --backup <name>              which backup, as \`backupkit list\` names it (default: the newest)
  --as-of <time>               instead: the newest backup made at or before this time, such as
                               2026-11-21T12:45:00Z
  --verify-key-file <file>     refuse an archive not signed by this armoured OpenPGP public key
                               (repeatable: any one of them; exit code 3)`;

const GLOBAL = `Usage: backupkit <command> [options]

Commands:
  backup    back up the sources into one archive      ${KIND_PAIRS} --to dest
  restore   restore a backup into empty targets        --from dest [--backup name] ${KIND_PAIRS}
  list      list the backups on a destination          --from dest
  verify    check that a backup is restorable          --from dest [--backup name] [--level checksums|restore]
  inspect   show an archive file's header and manifest <archive-file> [--entries]
  prune     delete backups a retention policy drops    --from dest --keep-last n --keep-daily n ... [--dry-run]
  run       run the config file's schedule until SIGTERM --config backupkit.config.js
  status    show the schedule and the newest backups    --config backupkit.config.js

\`backupkit <command> --help\` lists every option of a command, with an example.
A destination is ${DESTINATION}.
Options also come from backupkit.config.js or .json (--config file); flags win.
Secrets never go on the command line: BACKUPKIT_PASSPHRASE or --passphrase-file, --private-key-file
(its passphrase in BACKUPKIT_KEY_PASSPHRASE), --sign-key-file (BACKUPKIT_SIGN_KEY_PASSPHRASE), PGPASSWORD, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
AZURE_STORAGE_CONNECTION_STRING, BACKUPKIT_SSH_KEY_FILE, BACKUPKIT_FTP_PASSWORD, BACKUPKIT_GCS_HMAC_ACCESS_ID / BACKUPKIT_GCS_HMAC_SECRET.
${COMMON.replace('this help', 'the help of a command')}
Exit codes: 0 done, 1 failed, 2 bad usage, 3 the backup is damaged or failed verification,
4 another process holds the lease (backup --lease), 130 interrupted (143 by SIGTERM).
Documentation: ${CLI_DOCS}`;

/** Each command's help: every flag it takes, and an example. */
const COMMAND_HELP = {
  backup: `Usage: backupkit backup <sources> --to <dest> [options]

Backs up every source into one archive, streamed to every destination; all of them succeed, or no
copy is left. Then applies the config file's \`retention\`, if any.

Sources (repeatable; or \`sources\` in the config file):
${kindOptions((cli) => cli.sourceHelp)}
Destinations (repeatable; or \`to\` in the config file):
  --to <dest>                  ${DESTINATION}
Archive:
  --incremental                only what changed since the newest backup of these sources on the
                               first --to (a full when there is none; nothing when nothing changed)
  --compression <algorithm>    gzip (default), zstd (Node.js 22.15 or later) or none
  --compression-level <n>      gzip 1-9 (default 1), zstd 1-19 (default 3)
  --encrypt                    encrypt with the passphrase from BACKUPKIT_PASSPHRASE or --passphrase-file
  --passphrase-file <file>     the passphrase, read from a file (one trailing newline is dropped)
  --recipient <file>           encrypt to this armoured OpenPGP public key (repeatable; implies --encrypt)
  --sign-key-file <file>       sign with this armoured OpenPGP private key; its passphrase in
                               BACKUPKIT_SIGN_KEY_PASSPHRASE
Across a fleet (or \`lease\` in the config file):
  --lease                      first take the lease kept in the first --to: when another process
                               holds it, write nothing and exit with code 4
  --lease-ttl <duration>       how long the lease lasts unless renewed, as 30s or 2m (default 30s;
                               implies --lease)
${COMMON}

Example:
  BACKUPKIT_PASSPHRASE=... backupkit backup --sqlite app=data/app.db --files uploads=data/uploads --to /backups --encrypt`,

  restore: `Usage: backupkit restore --from <dest> <targets> [options]

Restores a backup into targets that are missing or empty, after verifying every entry. Sources
without a target are verified, not written.

Which backup:
${WHICH_BACKUP}
Targets (repeatable; or \`targets\` in the config file):
${kindOptions((cli) => cli.targetHelp)}
${DECRYPTION}
${COMMON}

Example:
  backupkit restore --from /backups --sqlite app=restored/app.db --files uploads=restored/uploads`,

  list: `Usage: backupkit list --from <dest> [options]

Lists the backups on a destination, newest first, from their small sidecar files.

  --from <dest>                ${DESTINATION}
                               (default: \`from\` or the first of \`to\` in the config file)
${COMMON}

Example:
  backupkit list --from s3://backups/app?region=eu-west-1`,

  verify: `Usage: backupkit verify --from <dest> [options]

Checks that a backup is restorable, without touching any real target.

Which backup:
${WHICH_BACKUP}
How deep:
  --level <level>              checksums (default): every entry's SHA-256 and the manifest;
                               restore: also restore every source into throwaway targets and read it back
  --scratch-dir <dir>          where --level restore makes its throwaway files and folders
                               (default: the system's temporary folder)
${SCRATCH_OPTIONS}
${DECRYPTION}
${COMMON}

Example:
  backupkit verify --from /backups --level restore --scratch-dir /var/tmp`,

  inspect: `Usage: backupkit inspect <archive-file> [options]

Shows a local archive file's header and the summary of its manifest, without restoring anything.
A signature is shown, not checked (\`backupkit verify --verify-key-file\` checks it).

  --entries                    also list every entry: type, size, SHA-256 and path
${DECRYPTION}
${COMMON}

Example:
  backupkit inspect /backups/20261121-124500.tar.gz --entries`,

  prune: `Usage: backupkit prune --from <dest> <policy> [--dry-run]

Deletes the backups a retention policy drops; the newest backup is always kept. A backup is kept
when any rule keeps it; rules count fulls and incrementals alike, and a kept incremental keeps
every backup it builds on, back to its full.

  --from <dest>                ${DESTINATION}
                               (default: \`from\` or the first of \`to\` in the config file)
Policy (or \`retention\` in the config file):
  --keep-last <n>              the n newest backups
  --keep-daily <n>             the newest backup of each of the n last days that have one (UTC)
  --keep-weekly <n>            the same per ISO week
  --keep-monthly <n>           the same per month
  --max-age <age>              every backup younger than this: hours, days or weeks, as 36h, 30d or 8w
  --dry-run                    say what would be deleted, and delete nothing
${COMMON}

Example:
  backupkit prune --from /backups --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run`,

  run: `Usage: backupkit run [--config <file>] [--metrics-port <port>]

Runs the config file's \`schedule\` in the foreground: full and incremental backups of its
\`sources\` to its \`to\`, with its \`retention\` applied after each, and verifications, each on a
cron expression or an interval. Backups never overlap: one due while another runs is skipped, not
queued. At start, one backup is made at once if a full is overdue (none on the first destination
since the last slot). SIGTERM or SIGINT stops it: a running backup finishes first, and a second
signal cancels it, leaving nothing behind. Exit code 0 once stopped, 143 (SIGTERM) or 130 (SIGINT)
when a backup was cancelled.

  --metrics-port <port>        serve the schedule's Prometheus metrics at http://127.0.0.1:<port>/metrics
                               (or \`schedule.metrics: { port, host }\` in the config file; 0 picks a
                               free port, printed at start); needs prom-client installed

A config file with a schedule (backupkit.config.js):
  export default {
    sources: [sqlite({ name: 'app', path: 'data/app.db' })],
    to: directory({ path: '/backups' }),
    retention: { keepDaily: 14 },
    schedule: { full: '0 3 * * *', incremental: '15m', verify: '0 4 * * 0', timeZone: 'Europe/Paris' },
  };

${COMMON}

Example:
  backupkit run --config backupkit.config.js`,

  status: `Usage: backupkit status [--config <file>]

Shows the config file's schedule (when each type runs next, and whether a full is overdue) and the
newest backups of each destination in \`to\`. It reads the destinations: it does not ask a running
\`backupkit run\`.

${COMMON}

Example:
  backupkit status --config backupkit.config.js`,
} as const;

/** The help of one command, or the overview of all of them. */
export function helpText(command?: keyof typeof COMMAND_HELP): string {
  const text = command === undefined ? GLOBAL : `${COMMAND_HELP[command]}\n\nDocumentation: ${CLI_DOCS}`;
  return `${text}\n`;
}
