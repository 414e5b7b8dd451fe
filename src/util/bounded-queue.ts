/**
 * Many producers, one consumer, at most `capacity` items waiting: producers block on `push` while
 * it is full, so parallel workers cannot run ahead of a sequential consumer (the tar stream).
 */
export class BoundedQueue<T> {
  private readonly items: T[] = [];
  private readonly spaceWaiters: Array<() => void> = [];
  private itemWaiter: (() => void) | undefined;
  private failure: { error: unknown } | undefined;
  private ended = false;

  constructor(private readonly capacity: number) {}

  /** Waits for room, then adds the item; rejects once the queue failed or the consumer left. */
  async push(item: T): Promise<void> {
    while (this.items.length >= this.capacity && !this.failure) {
      await new Promise<void>((resolve) => this.spaceWaiters.push(resolve));
    }
    if (this.failure) throw this.failure.error;
    this.items.push(item);
    this.wakeConsumer();
  }

  /** No more items will come. */
  end(): void {
    this.ended = true;
    this.wakeConsumer();
  }

  /** Stops producers and the consumer with `error`; the first failure wins. */
  fail(error: unknown): void {
    this.failure ??= { error };
    for (const wake of this.spaceWaiters.splice(0)) wake();
    this.wakeConsumer();
  }

  async *drain(): AsyncGenerator<T> {
    try {
      for (;;) {
        if (this.failure) throw this.failure.error;
        const item = this.items.shift();
        if (item !== undefined) {
          this.spaceWaiters.shift()?.();
          yield item;
          continue;
        }
        if (this.ended) return;
        await new Promise<void>((resolve) => (this.itemWaiter = resolve));
      }
    } finally {
      // The consumer stopped (done, failed or abandoned): release any producer still waiting.
      this.fail(new Error('The queue was closed'));
    }
  }

  private wakeConsumer(): void {
    const wake = this.itemWaiter;
    this.itemWaiter = undefined;
    wake?.();
  }
}
