/**
 * The soak's journal: what a client process (test/fixtures/soak-worker.ts)
 * is about to do and what came back, one line per event, in a file of its
 * own that the harness (test/fixtures/soak.ts) reads.
 *
 * 1. Lossless up to the moment of death. `JournalWriter.write` is one
 *    `writeSync` to a file opened O_APPEND: when it returns, the line is in
 *    the kernel's page cache, and a SIGKILL of the writer a moment later
 *    cannot take it back. A client writes a line *before* it sends the
 *    operation the line announces, so every operation that can reach the
 *    server is in the journal. (The journal used to be the client's stdout,
 *    a pipe: Node writes to a pipe without blocking and keeps what the pipe
 *    cannot take in the process's memory, which a SIGKILL throws away; when
 *    the harness was busy, operations that reached the server went missing
 *    from the journal and showed as false violations.)
 * 2. A file rather than a blocking pipe: the writer never waits for the
 *    reader (a busy harness would otherwise freeze every client's event
 *    loop, heartbeats and all, and change the load it is testing), and the
 *    reader can drain it synchronously at a moment of its choosing (right
 *    before or after it reads the store), so "every line written before
 *    this point" is something the checks can rely on.
 * 3. Every line starts with a sequence number, 1, 2, 3, ... The reader
 *    checks each is the previous + 1; anything else (a gap, a repeat, a
 *    line without one) is a *harness error*: the journal is not what the
 *    client wrote, so no verdict about the store can be drawn from it. The
 *    one loss allowed is a torn last line of a dead writer (a write cut by
 *    the kill, in theory: a single small write to a regular file is not
 *    split in practice), which is counted, not reported.
 */
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';

export class JournalWriter {
  private readonly fd: number;
  private seq = 0;

  constructor(file: string) {
    this.fd = openSync(file, 'a');
  }

  /** Returns once the line is in the kernel (survives a SIGKILL of this process). */
  write(line: string): void {
    const b = Buffer.from(`${++this.seq} ${line}\n`);
    // A regular file takes a whole small write; the loop is for the letter of the API.
    for (let off = 0; off < b.length;) off += writeSync(this.fd, b, off);
  }

  /** For the harness's self-test only: a line lost (its number used, nothing written). */
  lose(): void {
    ++this.seq;
  }
}

/** Reads one client's journal as it grows. Not shared between readers. */
export class JournalReader {
  private readonly fd: number;
  private readonly chunk = Buffer.allocUnsafe(1 << 16);
  private pos = 0;
  private rest = '';
  private expected = 1;
  private closed = false;
  /** Lines delivered so far. */
  lines = 0;

  /**
   * `onLine` gets each line without its number; `onError` gets every break
   * in the sequence (a harness error, never a verdict on the store).
   */
  constructor(file: string, private readonly onLine: (line: string) => void, private readonly onError: (message: string) => void) {
    this.fd = openSync(file, 'r');
  }

  /** Reads everything written so far, synchronously, and delivers the complete lines. */
  drain(): void {
    if (this.closed) return;
    for (;;) {
      const n = readSync(this.fd, this.chunk, 0, this.chunk.length, this.pos);
      if (n === 0) break;
      this.pos += n;
      this.rest += this.chunk.toString('latin1', 0, n);
    }
    let start = 0;
    for (let nl = this.rest.indexOf('\n'); nl >= 0; nl = this.rest.indexOf('\n', start)) {
      this.deliver(this.rest.slice(start, nl));
      start = nl + 1;
    }
    this.rest = this.rest.slice(start);
  }

  /** Bytes written and not yet read. */
  unread(): number {
    return this.closed ? 0 : fstatSync(this.fd).size - this.pos;
  }

  private deliver(raw: string): void {
    // Lines are ASCII (labels, paths, numbers, error codes): latin1 decoding cannot split a character.
    const sp = raw.indexOf(' ');
    const seq = sp > 0 ? Number(raw.slice(0, sp)) : NaN;
    if (!Number.isInteger(seq)) {
      this.onError(`journal line ${this.expected} has no sequence number: ${JSON.stringify(raw.slice(0, 200))}`);
      return;
    }
    if (seq !== this.expected) this.onError(`journal sequence broken: line ${seq} where ${this.expected} was due (${seq > this.expected ? `${seq - this.expected} lines missing` : 'a line repeated or out of order'})`);
    this.expected = seq + 1;
    this.lines++;
    this.onLine(raw.slice(sp + 1));
  }

  /**
   * The writer is dead: reads the rest and closes. Returns whether its last
   * line was torn (the only loss a kill may cause).
   */
  finish(): boolean {
    this.drain();
    this.closed = true;
    closeSync(this.fd);
    return this.rest !== '';
  }
}
