/** A request's abort signal on the server (connection.ts), made lazily. */
/**
 * A request's abort signal, standing in for an AbortSignal: the real
 * controller is made only when something listens (a lock wait) or aborts it.
 * Profiled: making an AbortController per write was 7% of the server's CPU
 * for a durable set, and nearly every write is admitted without a wait.
 * The engine uses of a signal only `aborted`, `reason` and the listeners.
 */
export class RequestSignal {
  private ctl: AbortController | undefined;
  done: Promise<void> | undefined;

  get aborted(): boolean {
    return this.ctl?.signal.aborted ?? false;
  }

  get reason(): unknown {
    return this.ctl?.signal.reason;
  }

  addEventListener(...args: Parameters<AbortSignal['addEventListener']>): void {
    this.controller().signal.addEventListener(...args);
  }

  removeEventListener(...args: Parameters<AbortSignal['removeEventListener']>): void {
    this.ctl?.signal.removeEventListener(...args);
  }

  throwIfAborted(): void {
    this.ctl?.signal.throwIfAborted();
  }

  private controller(): AbortController {
    return (this.ctl ??= new AbortController());
  }

  abort(reason: unknown): void {
    this.controller().abort(reason);
  }

  /** As the AbortSignal the handlers are typed with (they use only what is above). */
  get signal(): AbortSignal {
    return this as unknown as AbortSignal;
  }
}

