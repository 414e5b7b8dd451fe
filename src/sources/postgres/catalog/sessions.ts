import type pg from 'pg';

/**
 * The connections the catalogs are read on: the snapshot's own, and helpers that import its
 * snapshot, so that the large catalog queries (relations, columns, indexes, constraints,
 * dependencies: the server's deparse functions, 15–45 µs an object) run side by side on the
 * server instead of one after another. A query goes to whichever connection is free, in the
 * order asked.
 */
export class CatalogSessions {
  readonly #idle: pg.Client[];
  readonly #waiting: Array<(client: pg.Client) => void> = [];
  readonly #helpers: Array<Promise<pg.Client | undefined>> = [];
  /** The first query that failed: its transaction is aborted, and every later query fails with it. */
  #failure: { error: unknown } | undefined;
  #ended = false;

  constructor(main: pg.Client) {
    this.#idle = [main];
  }

  /**
   * Opens `count` helpers in the background, each running `setup` (which imports the snapshot)
   * first. Queries do not wait for them; one that fails to open is left out, since the snapshot's
   * own connection reads everything alone if need be.
   */
  addHelpers(count: number, open: () => Promise<pg.Client>, setup: string): void {
    for (let i = 0; i < count; i++) {
      const helper = (async () => {
        const client = await open();
        try {
          await client.query(setup);
        } catch (error) {
          await client.end().catch(() => {});
          throw error;
        }
        return client;
      })().then(
        (client) => {
          if (this.#ended) return client;
          this.#release(client);
          return client;
        },
        () => undefined,
      );
      this.#helpers.push(helper);
    }
  }

  /** `urgent`: for the reader whose turn it is, which every reader after it waits for: before the queries waiting. */
  async query<T extends Record<string, unknown>>(sql: string, params: unknown[], urgent = false): Promise<T[]> {
    if (this.#failure) throw this.#failure.error;
    const client = this.#idle.pop() ?? (await new Promise<pg.Client>((resolve) => (urgent ? this.#waiting.unshift(resolve) : this.#waiting.push(resolve))));
    try {
      return (await client.query<T>(sql, params)).rows;
    } catch (error) {
      this.#failure ??= { error };
      throw this.#failure.error;
    } finally {
      this.#release(client);
    }
  }

  /** Closes the helpers (the snapshot's connection stays open), those still connecting once they are. */
  async end(): Promise<void> {
    this.#ended = true;
    await Promise.all(this.#helpers.map(async (helper) => (await helper)?.end().catch(() => {})));
  }

  #release(client: pg.Client): void {
    const next = this.#waiting.shift();
    if (next) next(client);
    else this.#idle.push(client);
  }
}
