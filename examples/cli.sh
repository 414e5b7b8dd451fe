#!/usr/bin/env bash
# The backupkit command line, end to end (`bash examples/cli.sh` after `npm run build`; installed
# from npm, `backupkit` is on the PATH). Secrets come from the environment, never from flags.
set -euo pipefail
backupkit() { node "$(dirname "$0")/../dist/cli/main.js" "$@"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
sqlite3 app.db "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hello');"
mkdir uploads && echo 'a file' > uploads/readme.txt

export BACKUPKIT_PASSPHRASE='an example passphrase, not a real one'
backupkit backup --sqlite app=app.db --files uploads=uploads --to ./backups --encrypt --json | tail -1
backupkit list --from ./backups
backupkit verify --from ./backups --level restore | tail -1
backupkit inspect ./backups/*.gpg | grep '"type":"summary"'
backupkit restore --from ./backups --sqlite app=restored/app.db --files uploads=restored/uploads | tail -1
sqlite3 restored/app.db 'SELECT body FROM notes'
backupkit prune --from ./backups --keep-last 1 --dry-run | tail -1
