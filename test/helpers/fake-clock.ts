import type { ScheduleClock, ScheduleTimer } from '../../src/index.js';

interface Pending {
  readonly at: number;
  readonly callback: () => void;
}

/**
 * A clock that moves only when told: a schedule's timers fire exactly at the times they were set
 * for, in order, as `advanceTo` passes them. No real time goes by.
 */
export class FakeClock implements ScheduleClock {
  #now: number;
  readonly #timers = new Set<Pending>();

  constructor(start: number | Date) {
    this.#now = typeof start === 'number' ? start : start.getTime();
  }

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, delayMs: number): ScheduleTimer {
    const timer = { at: this.#now + Math.max(0, delayMs), callback };
    this.#timers.add(timer);
    return { clear: () => void this.#timers.delete(timer) };
  }

  /** Moves time to `at`, firing on the way every timer that falls due, each at its own time. */
  advanceTo(at: number | Date): void {
    const target = typeof at === 'number' ? at : at.getTime();
    for (;;) {
      const [first] = [...this.#timers].filter((t) => t.at <= target).sort((a, b) => a.at - b.at);
      if (!first) break;
      this.#timers.delete(first);
      this.#now = Math.max(this.#now, first.at);
      first.callback();
    }
    this.#now = Math.max(this.#now, target);
  }

  /** Moves time on by `ms`. */
  advance(ms: number): void {
    this.advanceTo(this.#now + ms);
  }

  /** Timers set and not yet fired or cleared. */
  get pending(): number {
    return this.#timers.size;
  }
}
