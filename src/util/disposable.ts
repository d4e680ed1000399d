/**
 * `DisposableStack` and `AsyncDisposableStack` (TC39 explicit resource
 * management): the runtime's own when it has them, else a small polyfill of
 * the part this code base uses. Node 20 has `Symbol.dispose` and
 * `Symbol.asyncDispose` but not the stacks, and a library must not patch
 * globals: modules import the stacks from here.
 *
 * An owner puts each thing it creates on its stack as it creates it (`use`
 * for a disposable, `defer` for a cleanup callback, `adopt` for a value and
 * its release); disposing the stack releases them once, in reverse order.
 * An error from one cleanup does not stop the others: the first is thrown
 * after all ran, later ones chained as `SuppressedError`s.
 */

type Cleanup = () => unknown;

function suppressed(error: unknown, previous: unknown): Error {
  const Native = (globalThis as { SuppressedError?: new (e: unknown, s: unknown, m: string) => Error }).SuppressedError;
  if (Native !== undefined) return new Native(error, previous, 'an error was suppressed during disposal');
  return Object.assign(new Error('an error was suppressed during disposal'), { name: 'SuppressedError', error, suppressed: previous });
}

class StackCore {
  private cleanups: Cleanup[] | undefined = [];

  get disposed(): boolean {
    return this.cleanups === undefined;
  }

  push(c: Cleanup, what: string): void {
    if (this.cleanups === undefined) throw new ReferenceError(`${what}: the stack is already disposed`);
    this.cleanups.push(c);
  }

  take(): Cleanup[] {
    const cs = this.cleanups ?? [];
    this.cleanups = undefined;
    return cs.reverse();
  }

  moveTo(other: StackCore): void {
    if (this.cleanups === undefined) throw new ReferenceError('move: the stack is already disposed');
    other.cleanups = this.cleanups;
    this.cleanups = undefined;
  }
}

class DisposableStackPolyfill implements Disposable {
  private readonly core = new StackCore();

  get disposed(): boolean {
    return this.core.disposed;
  }

  use<T extends Disposable | null | undefined>(value: T): T {
    if (value !== null && value !== undefined) {
      const f = value[Symbol.dispose];
      if (typeof f !== 'function') throw new TypeError('use: the value is not disposable');
      this.core.push(() => f.call(value), 'use');
    }
    return value;
  }

  adopt<T>(value: T, onDispose: (value: T) => void): T {
    this.core.push(() => onDispose(value), 'adopt');
    return value;
  }

  defer(onDispose: () => void): void {
    this.core.push(onDispose, 'defer');
  }

  move(): DisposableStackPolyfill {
    const s = new DisposableStackPolyfill();
    this.core.moveTo(s.core);
    return s;
  }

  dispose(): void {
    let error: unknown;
    let failed = false;
    for (const c of this.core.take()) {
      try {
        c();
      } catch (e) {
        error = failed ? suppressed(e, error) : e;
        failed = true;
      }
    }
    if (failed) throw error;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

class AsyncDisposableStackPolyfill implements AsyncDisposable {
  private readonly core = new StackCore();

  get disposed(): boolean {
    return this.core.disposed;
  }

  use<T extends AsyncDisposable | Disposable | null | undefined>(value: T): T {
    if (value !== null && value !== undefined) {
      const v = value as Partial<AsyncDisposable & Disposable>;
      const f = v[Symbol.asyncDispose] ?? v[Symbol.dispose];
      if (typeof f !== 'function') throw new TypeError('use: the value is not disposable');
      this.core.push(() => f.call(value), 'use');
    }
    return value;
  }

  adopt<T>(value: T, onDisposeAsync: (value: T) => PromiseLike<void> | void): T {
    this.core.push(() => onDisposeAsync(value), 'adopt');
    return value;
  }

  defer(onDisposeAsync: () => PromiseLike<void> | void): void {
    this.core.push(onDisposeAsync, 'defer');
  }

  move(): AsyncDisposableStackPolyfill {
    const s = new AsyncDisposableStackPolyfill();
    this.core.moveTo(s.core);
    return s;
  }

  async disposeAsync(): Promise<void> {
    let error: unknown;
    let failed = false;
    for (const c of this.core.take()) {
      try {
        await c();
      } catch (e) {
        error = failed ? suppressed(e, error) : e;
        failed = true;
      }
    }
    if (failed) throw error;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.disposeAsync();
  }
}

type Globals = { DisposableStack?: DisposableStackConstructor; AsyncDisposableStack?: AsyncDisposableStackConstructor };

// The runtime's own when present (Node 24+); the polyfill behaves the same for what is used here.
const DisposableStackImpl: DisposableStackConstructor = (globalThis as Globals).DisposableStack ?? (DisposableStackPolyfill as unknown as DisposableStackConstructor);
const AsyncDisposableStackImpl: AsyncDisposableStackConstructor = (globalThis as Globals).AsyncDisposableStack ?? (AsyncDisposableStackPolyfill as unknown as AsyncDisposableStackConstructor);

export { AsyncDisposableStackImpl as AsyncDisposableStack, DisposableStackImpl as DisposableStack };
export { AsyncDisposableStackPolyfill, DisposableStackPolyfill };
