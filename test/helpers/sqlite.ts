import Sqlite from 'better-sqlite3';

/** A small WAL database with a table of accounts whose balances always sum to `total`. */
export function createBank(path: string, accounts = 100, balance = 1000): void {
  const db = new Sqlite(path);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL); CREATE TABLE transfers (id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER, at TEXT)');
  const insert = db.prepare('INSERT INTO accounts (id, balance) VALUES (?, ?)');
  db.transaction(() => {
    for (let id = 1; id <= accounts; id++) insert.run(id, balance);
  })();
  db.close();
}

export function bankSummary(path: string): { integrity: string; total: number; accounts: number; transfers: number } {
  const db = new Sqlite(path, { readonly: true, fileMustExist: true });
  try {
    return {
      integrity: String(db.pragma('integrity_check', { simple: true })),
      total: (db.prepare('SELECT sum(balance) AS total FROM accounts').get() as { total: number }).total,
      accounts: (db.prepare('SELECT count(*) AS n FROM accounts').get() as { n: number }).n,
      transfers: (db.prepare('SELECT count(*) AS n FROM transfers').get() as { n: number }).n,
    };
  } finally {
    db.close();
  }
}

/** Everything in the database, table by table, for exact comparison. */
export function dumpRows(path: string): Record<string, unknown[]> {
  const db = new Sqlite(path, { readonly: true, fileMustExist: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>;
    return Object.fromEntries(tables.map(({ name }) => [name, db.prepare(`SELECT * FROM "${name}" ORDER BY rowid`).all()]));
  } finally {
    db.close();
  }
}
