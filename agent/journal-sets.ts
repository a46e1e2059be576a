// Each set's state in the journal beside its records: seq counters and the
// backlog (kept up to date by Journal.append and markSent, so reading them
// never sums the journal), the last send error, the journal-limit and
// watcher flags `tidemark status` shows, the journal generation
// (DESIGN 8), and when recent messages were sent (status names a target that
// has not applied a message sent long ago and has not moved since).

import { randomBytes } from "node:crypto";
import type { DatabaseSync, StatementSync } from "node:sqlite";

export interface SetCounters {
  /** Seq the next change will get. */
  nextSeq: number;
  /** Last seq the queue accepted. */
  sentSeq: number;
  backlogRecords: number;
  backlogBytes: number;
  messagesSent: number;
  bytesSent: number;
  lastSendError: string | null;
  /** The backlog hit the journal limit: changes since then are not journaled until a catch-up scan. */
  overflowed: boolean;
  /** Why the watcher of the set stopped working, while it does not. */
  watcherProblem: string | null;
}

/** A set's journal generation: its id, and the seq it began at (0: with the journal). */
export interface JournalGeneration {
  id: string;
  sinceSeq: number;
}

interface SetRow {
  next_seq: number;
  sent_seq: number;
  messages_sent: number;
  bytes_sent: number;
  last_send_error: string | null;
  overflowed: number;
  watcher_problem: string | null;
  bandwidth_wait_since?: string | null;
  backlog_records: number;
  backlog_bytes: number;
}

function newGenerationId(): string {
  return randomBytes(8).toString("hex");
}

/** Each message's last seq and when the queue accepted it (ms), kept SENDS_KEPT_MS: status finds the oldest one the target has not applied. */
const SENDS_SCHEMA = `
CREATE TABLE IF NOT EXISTS sends (
  set_name TEXT NOT NULL,
  seq INTEGER NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (set_name, seq)
) WITHOUT ROWID;
-- Each send forgets the set's sends older than SENDS_KEPT_MS: by time, not a scan of the set's rows (a journal made
-- before the index gets it when it is next opened).
CREATE INDEX IF NOT EXISTS sends_by_time ON sends (set_name, at);`;

/** How long send times are kept: longer than status waits before it calls a target stalled. */
const SENDS_KEPT_MS = 2 * 3_600_000;

function prepare(db: DatabaseSync) {
  const statement = (sql: string): StatementSync => db.prepare(sql);
  return {
    ensure: statement("INSERT OR IGNORE INTO sets (name, next_seq, sent_seq) VALUES (?, 1, 0)"),
    get: statement("SELECT * FROM sets WHERE name = ?"),
    advance: statement("UPDATE sets SET next_seq = ?, backlog_records = backlog_records + ?, backlog_bytes = backlog_bytes + ? WHERE name = ?"),
    sent: statement(
      `UPDATE sets SET sent_seq = ?, messages_sent = messages_sent + 1, bytes_sent = bytes_sent + ?, last_send_error = NULL,
       backlog_records = backlog_records - ?, backlog_bytes = backlog_bytes - ? WHERE name = ?`,
    ),
    sendError: statement("UPDATE sets SET last_send_error = ? WHERE name = ?"),
    overflow: statement("UPDATE sets SET overflowed = ? WHERE name = ?"),
    watcherProblem: statement("UPDATE sets SET watcher_problem = ? WHERE name = ?"),
    bandwidthWait: statement("UPDATE sets SET bandwidth_wait_since = ? WHERE name = ?"),
    addBacklogBytes: statement("UPDATE sets SET backlog_bytes = backlog_bytes + ? WHERE name = ?"),
    getGeneration: statement("SELECT id, since_seq AS sinceSeq FROM generations WHERE set_name = ?"),
    setGeneration: statement("INSERT OR REPLACE INTO generations (set_name, id, since_seq) VALUES (?, ?, ?)"),
    probe: statement("UPDATE sets SET next_seq = next_seq"),
    recordSend: statement("INSERT OR REPLACE INTO sends (set_name, seq, at) VALUES (?, ?, ?)"),
    forgetSends: statement("DELETE FROM sends WHERE set_name = ? AND at < ?"),
    firstSendAfter: statement("SELECT seq, at FROM sends WHERE set_name = ? AND seq > ? ORDER BY seq LIMIT 1"),
  };
}

export class SetStates {
  readonly #s: ReturnType<typeof prepare>;
  readonly #now: () => number;

  constructor(db: DatabaseSync, now: () => number = Date.now) {
    db.exec(SENDS_SCHEMA);
    this.#s = prepare(db);
    this.#now = now;
  }

  /** The seq the set's next change gets (the set is made on first use). */
  nextSeq(set: string): number {
    this.#s.ensure.run(set);
    return (this.#s.get.get(set) as unknown as SetRow).next_seq;
  }

  /** Records appended up to nextSeq - 1: the backlog grows by records and bytes. */
  advance(set: string, nextSeq: number, records: number, bytes: number): void {
    this.#s.advance.run(nextSeq, records, bytes, set);
  }

  /** The queue accepted everything up to lastSeq: records and bytes left the backlog. */
  sent(set: string, lastSeq: number, messageBytes: number, records: number, bytes: number): void {
    this.#s.sent.run(lastSeq, messageBytes, records, bytes, set);
    const now = this.#now();
    this.#s.recordSend.run(set, lastSeq, now);
    this.#s.forgetSends.run(set, now - SENDS_KEPT_MS);
  }

  /** The first message sent (in the last SENDS_KEPT_MS, or since, when none was sent after it) that holds a seq after afterSeq: its last seq and when it was sent. */
  firstSendAfter(set: string, afterSeq: number): { seq: number; at: number } | undefined {
    const row = this.#s.firstSendAfter.get(set, afterSeq) as { seq: number; at: number } | undefined;
    return row && { seq: row.seq, at: row.at };
  }

  /** A record's content changed size in place (a replaced record). */
  addBacklogBytes(set: string, bytes: number): void {
    this.#s.addBacklogBytes.run(bytes, set);
  }

  /** Names the set in the journal as one an agent replicates (at its start), also while it holds nothing: see known. */
  register(set: string): void {
    this.#s.ensure.run(set);
  }

  /** Whether an agent ever ran the set with this journal (or journaled anything of it): a set added to the config of a running agent is not. */
  known(set: string): boolean {
    return this.#s.get.get(set) !== undefined;
  }

  counters(set: string): SetCounters {
    const row = this.#s.get.get(set) as SetRow | undefined;
    return {
      nextSeq: row?.next_seq ?? 1,
      sentSeq: row?.sent_seq ?? 0,
      backlogRecords: row?.backlog_records ?? 0,
      backlogBytes: row?.backlog_bytes ?? 0,
      messagesSent: row?.messages_sent ?? 0,
      bytesSent: row?.bytes_sent ?? 0,
      lastSendError: row?.last_send_error ?? null,
      overflowed: row?.overflowed === 1,
      watcherProblem: row?.watcher_problem ?? null,
    };
  }

  recordSendError(set: string, error: string | null): void {
    this.#s.ensure.run(set);
    this.#s.sendError.run(error, set);
  }

  /** Records since when the set's next message waits for the bandwidth budget (null once it goes), for `tidemark status`. */
  recordBandwidthWait(set: string, since: string | null): void {
    this.#s.ensure.run(set);
    this.#s.bandwidthWait.run(since, set);
  }

  /** Since when the set's next message waits for the bandwidth budget, or null when it does not. */
  bandwidthWaitSince(set: string): string | null {
    return (this.#s.get.get(set) as SetRow | undefined)?.bandwidth_wait_since ?? null;
  }

  /** Records why a set's watcher stopped working (null once it works), for `tidemark status`. */
  setWatcherProblem(set: string, problem: string | null): void {
    this.#s.ensure.run(set);
    this.#s.watcherProblem.run(problem, set);
  }

  /** Marks (or clears) a set whose backlog reached the journal limit; kept across restarts. */
  setOverflowed(set: string, overflowed: boolean): void {
    this.#s.ensure.run(set);
    this.#s.overflow.run(overflowed ? 1 : 0, set);
  }

  /** The set's journal generation, made on first use: a journal made anew (lost, deleted) has a generation no target knows. */
  generation(set: string): JournalGeneration {
    // Read first: every message packed asks, and a write would take the database's lock each time.
    const known = this.knownGeneration(set);
    if (known) return known;
    const made = { id: newGenerationId(), sinceSeq: 0 };
    this.#s.setGeneration.run(set, made.id, made.sinceSeq);
    return made;
  }

  /** The set's journal generation when it has one, without making it (for readers such as `tidemark status`). */
  knownGeneration(set: string): JournalGeneration | undefined {
    return this.#s.getGeneration.get(set) as unknown as JournalGeneration | undefined;
  }

  /** Begins a new generation of the set at its next seq: what the agent sends from now on restarts the target's chain. */
  beginGeneration(set: string): JournalGeneration {
    const generation = { id: newGenerationId(), sinceSeq: this.counters(set).nextSeq };
    this.#s.setGeneration.run(set, generation.id, generation.sinceSeq);
    return generation;
  }

  /** A write that changes nothing: whether a write transaction commits. */
  probe(): void {
    this.#s.probe.run();
  }
}
