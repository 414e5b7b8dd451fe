/**
 * A separate process that commits money transfers until killed or its stdin closes (the test's
 * process ended, however): the "other application" writing while backups run. Arguments: database path, number of accounts, and transfers per second (0,
 * the default, for as fast as it can). Prints "ready" after its first commits.
 */
import Sqlite from 'better-sqlite3';

const [path = '', accountsArg = '100', rateArg = '0'] = process.argv.slice(2);
const accounts = Number(accountsArg);
const perSecond = Number(rateArg);
const BATCH = 50;
const db = new Sqlite(path, { timeout: 10_000 });
db.pragma('journal_mode = WAL');
const move = db.prepare('UPDATE accounts SET balance = balance + ? WHERE id = ?');
const log = db.prepare("INSERT INTO transfers (src, dst, amount, at) VALUES (?, ?, ?, datetime('now'))");
const transfer = db.transaction((src: number, dst: number, amount: number) => {
  move.run(-amount, src);
  move.run(amount, dst);
  log.run(src, dst, amount);
});

let count = 0;
function batch(): void {
  for (let i = 0; i < BATCH; i++) {
    const src = 1 + Math.floor(Math.random() * accounts);
    const dst = 1 + Math.floor(Math.random() * accounts);
    transfer(src, dst, 1 + Math.floor(Math.random() * 50));
    count += 1;
  }
  if (count === BATCH) process.stdout.write('ready\n');
  if (perSecond > 0) setTimeout(batch, (1000 * BATCH) / perSecond);
  else setImmediate(batch);
}
batch();
function stop(): void {
  db.close();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.stdin.on('end', stop).resume();
