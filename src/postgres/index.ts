/**
 * fslock/postgres: fslock's lock API on PostgreSQL's session-level advisory
 * locks, for locks that must hold across machines.
 *
 * What carries over from the kernel locks, and how:
 * - A holder that dies lets go: an advisory lock belongs to its database
 *   session, and the server ends the session when the connection closes.
 * - Waits never poll: `pg_advisory_lock` waits in the server's lock queue, on
 *   a connection of its own (one per waiting or held lock). A timeout or an
 *   abort ends the wait by closing that connection, so a lock granted at the
 *   same instant goes with it: nothing is left held.
 * - Deadlocks among advisory locks are detected by the server (SQLSTATE
 *   40P01): the one wait it breaks fails with EDEADLK.
 * - Who holds it: pg_locks and pg_stat_activity.
 *
 * What is added: a fencing token per grant, strictly increasing per name
 * across every holder (a counter row updated while the lock is held), so a
 * resource can refuse a holder that was paused past its loss of the lock;
 * and `lost`, an AbortSignal that fires when the holder's connection breaks.
 *
 * A name maps to the 64-bit advisory key by SHA-256 (the first 8 bytes of
 * sha256("fslock:" + name), as a signed integer). Two names that collide
 * share a key and so exclude each other (never two holders at once); a
 * collision only serializes unrelated work, with odds of 2^-64 per pair.
 *
 * `pg` is a peer dependency, loaded when connectLocks is first called.
 */
import { createHash } from 'crypto';
import { createRequire } from 'module';
import { abortError, errorCode, FslockError, invalidArgType, invalidArgValue, timeoutError } from '../errors.js';
import { checkOptionsObject, parseSignal, parseTimeout } from '../options.js';
import { randomTag } from '../names.js';

export type LockMode = 'exclusive' | 'shared';

/** How to reach the server: a connection string, or any pg Pool/Client configuration. */
export interface ConnectOptions {
  connectionString?: string;
  host?: string;
  port?: number;
  user?: string;
  password?: string | (() => string | Promise<string>);
  database?: string;
  /** Connections kept at most, one per held or waiting lock (default 64). */
  max?: number;
  /** The table holding fencing tokens (created if missing; default 'fslock_tokens'). */
  tokenTable?: string;
  /**
   * application_name of fslock's connections, shown by inspect() (default
   * 'fslock'); '#' and an 8-digit tag naming this connectLocks() are appended,
   * which is how deadlock detection tells its sessions from others'.
   */
  application_name?: string;
  [option: string]: unknown;
}

export interface PgLockOptions {
  mode?: LockMode;
  /** Milliseconds to wait; 0 = one try (ELOCKED). Default: forever. */
  timeout?: number;
  signal?: AbortSignal;
  /**
   * Look for a cycle of waits while waiting (default true): a wait that
   * would never end because its holder waits, directly or through others,
   * for a lock this connectLocks() holds fails with EDEADLK.
   */
  deadlock?: boolean;
}

export interface PgHolder {
  /** The holder's server process id (its backend). */
  pid: number;
  /** Its application_name. */
  application: string;
  /** Its client address and port ('local' for a Unix socket). */
  client: string;
}

export interface PgLockInfo {
  name: string;
  held: boolean;
  mode: LockMode | null;
  holders: PgHolder[];
  /** Sessions waiting for it. */
  waiting: number;
}

/** A held advisory lock. */
export interface PgLock {
  readonly name: string;
  readonly mode: LockMode;
  /** Greater than every token granted before for this name, by any holder. */
  readonly token: bigint;
  /** Fires when the connection that holds the lock breaks before release(): the lock is gone. */
  readonly lost: AbortSignal;
  readonly released: boolean;
  /** Unlocks and gives the connection back. Idempotent. */
  release(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface Locks {
  lock(name: string, options?: PgLockOptions): Promise<PgLock>;
  /** One try; null when someone else holds it. Never waits. */
  tryLock(name: string, options?: Omit<PgLockOptions, 'timeout' | 'signal'>): Promise<PgLock | null>;
  withLock<T>(name: string, fn: (lock: PgLock) => T | Promise<T>, options?: PgLockOptions): Promise<T>;
  inspect(name: string): Promise<PgLockInfo>;
  /** Releases every lock still held and closes the connections. */
  close(): Promise<void>;
}

/** The advisory-lock key of a name (see the header). */
export function lockKey(name: string): bigint {
  return createHash('sha256').update(`fslock:${name}`).digest().readBigInt64BE(0);
}

// --- the pg client, as much of it as is used --------------------------------

interface PgQueryResult {
  rows: Array<Record<string, unknown>>;
}
interface PgClient {
  query(text: string, values?: unknown[]): Promise<PgQueryResult>;
  release(destroy?: boolean | Error): void;
  on(event: 'error' | 'end', fn: (err?: Error) => void): void;
  removeListener(event: string, fn: (...a: unknown[]) => void): void;
  processID?: number;
}
interface PgPool {
  connect(): Promise<PgClient>;
  query(text: string, values?: unknown[]): Promise<PgQueryResult>;
  end(): Promise<void>;
  on(event: 'error', fn: (err: Error) => void): void;
}

function loadPg(): { Pool: new (config: Record<string, unknown>) => PgPool } {
  try {
    return createRequire(__filename)('pg') as { Pool: new (config: Record<string, unknown>) => PgPool };
  } catch (err) {
    throw new FslockError(
      'MODULE_NOT_FOUND',
      "fslock/postgres needs the 'pg' package (a peer dependency): npm install pg",
      { cause: err },
    );
  }
}

/**
 * A checked-out pg client emits 'error' when its connection breaks, and an
 * 'error' nobody listens to would crash the process: while fslock has a
 * client, this listener is on it (a held lock adds its own, which reports it).
 */
const ignore = (): void => undefined;

async function checkOut(pool: PgPool): Promise<PgClient> {
  const c = await pool.connect();
  c.on('error', ignore);
  return c;
}

/**
 * Gives a client back to the pool, or closes its connection (`destroy`),
 * which releases its locks. A destroyed client keeps `ignore`: its pending
 * query may still fail with an 'error' event.
 */
function giveBack(c: PgClient, destroy = false): void {
  if (destroy) {
    c.release(true);
    return;
  }
  c.removeListener('error', ignore);
  c.release();
}

const LOCK_OPTIONS = new Set(['mode', 'timeout', 'signal', 'deadlock']);
const TRY_OPTIONS = new Set(['mode']);

function checkName(name: unknown): string {
  if (typeof name !== 'string') throw invalidArgType('name', 'of type string', name);
  if (name.length === 0) throw invalidArgValue('name', name, 'must be a non-empty string');
  return name;
}

function parseMode(value: unknown): LockMode {
  if (value === undefined) return 'exclusive';
  if (value !== 'exclusive' && value !== 'shared') {
    throw invalidArgValue('options.mode', value, "must be 'exclusive' or 'shared'");
  }
  return value;
}

function quoteIdent(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/.test(name)) {
    throw invalidArgValue('options.tokenTable', name, 'must be an SQL identifier, optionally schema-qualified');
  }
  return name
    .split('.')
    .map((p) => `"${p}"`)
    .join('.');
}

/** How often a wait looks for a cycle (the server's own deadlock_timeout is 1 s). */
const DEADLOCK_CHECK_MS = 1000;

/** A fixed key under which connectLocks creates the token table, once, whoever runs it first. */
const SETUP_KEY = lockKey('fslock/postgres: token table setup');

/** A wait that closed a cycle of waits: `cycle` describes it, or the server found it (deadlock_detected). */
function deadlockError(name: string, cycle: string, cause?: unknown): FslockError {
  return new FslockError(
    'EDEADLK',
    `EDEADLK: waiting for the lock '${name}' would close a cycle of waits (${cycle}), which no wait can ` +
      'end; this wait was chosen to break it. Take locks in one global order, or release what you hold and retry.',
    { path: name, cause },
  );
}

// --- deadlock detection -----------------------------------------------------
//
// Each lock has a connection (a server session) of its own, so the server,
// which detects cycles among sessions, never sees one between processes: a
// process holding 'a' on one session and waiting for 'b' on another is two
// unrelated sessions to it. fslock therefore looks at the server's lock table
// (pg_locks) at the level of connectLocks() instances — each tags its
// sessions' application_name — while a wait lasts: one edge from the waiting
// instance to every instance holding a conflicting lock on the key it waits
// for; other clients' sessions are nodes of their own. When a cycle goes
// through this instance, every fslock waiter on it computes the same victim
// from the same table (the fslock wait in the cycle that began last; the
// highest backend pid on a tie), and only the victim fails, so exactly one
// wait in a cycle gets EDEADLK.

interface LockRow {
  pid: number;
  granted: boolean;
  exclusive: boolean;
  key: string;
  node: string;
  app: string;
  since: number;
}

const TAG_RE = /#([0-9a-f]{8})$/;

function nodeOf(app: string, pid: number): string {
  const m = TAG_RE.exec(app);
  return m ? `fslock#${m[1]}` : `pid ${pid}`;
}

/** The cycle through `start`, as the list of its rows' nodes, or null. */
function findCycle(rows: LockRow[], start: string): string[] | null {
  const edges = new Map<string, Set<string>>();
  for (const w of rows) {
    if (w.granted) continue;
    for (const h of rows) {
      if (!h.granted || h.key !== w.key || (!h.exclusive && !w.exclusive)) continue;
      let set = edges.get(w.node);
      if (!set) edges.set(w.node, (set = new Set()));
      set.add(h.node);
    }
  }
  const path: string[] = [];
  const seen = new Set<string>();
  const visit = (n: string): boolean => {
    path.push(n);
    for (const m of edges.get(n) ?? []) {
      if (m === start) return true;
      if (!seen.has(m)) {
        seen.add(m);
        if (visit(m)) return true;
      }
    }
    path.pop();
    return false;
  };
  return visit(start) ? path : null;
}

function heldElsewhereError(name: string): FslockError {
  return new FslockError('ELOCKED', `ELOCKED: the lock '${name}' is held by another session`, { path: name });
}

class HeldLock implements PgLock {
  readonly name: string;
  readonly mode: LockMode;
  readonly token: bigint;
  readonly #lost = new AbortController();
  #client: PgClient | null;
  #onBreak: (err?: Error) => void;
  #forget: () => void;

  constructor(name: string, mode: LockMode, token: bigint, client: PgClient, forget: () => void) {
    this.name = name;
    this.mode = mode;
    this.token = token;
    this.#client = client;
    this.#forget = forget;
    this.#onBreak = (err?: Error) => {
      if (this.#client === null) return;
      this.#client = null;
      this.#forget();
      giveBack(client, true);
      this.#lost.abort(
        new FslockError('ECONNRESET', `the connection holding the lock '${name}' broke: the lock is gone`, {
          path: name,
          cause: err,
        }),
      );
    };
    client.on('error', this.#onBreak);
    client.on('end', this.#onBreak);
  }

  get lost(): AbortSignal {
    return this.#lost.signal;
  }

  get released(): boolean {
    return this.#client === null;
  }

  async release(): Promise<void> {
    const client = this.#client;
    if (client === null) return;
    this.#client = null;
    this.#forget();
    client.removeListener('error', this.#onBreak as (...a: unknown[]) => void);
    client.removeListener('end', this.#onBreak as (...a: unknown[]) => void);
    const fn = this.mode === 'shared' ? 'pg_advisory_unlock_shared' : 'pg_advisory_unlock';
    try {
      const r = await client.query(`SELECT ${fn}($1::bigint) AS ok`, [lockKey(this.name).toString()]);
      giveBack(client, r.rows[0]?.ok !== true);
    } catch {
      giveBack(client, true); // closing the connection releases the lock anyway
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}

/** Connects to PostgreSQL and returns the lock API over its advisory locks. */
export async function connectLocks(config: ConnectOptions | string = {}): Promise<Locks> {
  const o: ConnectOptions = typeof config === 'string' ? { connectionString: config } : { ...config };
  if (typeof o !== 'object' || o === null) throw invalidArgType('config', 'an object or a string', config);
  const table = quoteIdent(o.tokenTable ?? 'fslock_tokens');
  delete o.tokenTable;
  const { Pool } = loadPg();
  const tag = randomTag().slice(0, 8);
  const app = `${String(o.application_name ?? 'fslock').slice(0, 54)}#${tag}`;
  const pool = new Pool({ max: 64, ...o, application_name: app });
  pool.on('error', () => {
    // an idle connection broke: the pool drops it; held locks watch their own connection
  });
  try {
    await createTokenTable(pool, table);
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
  return new PgLocks(pool, table, tag);
}

/** The fencing-token table, created once, whoever connects first (under an advisory transaction lock). */
async function createTokenTable(pool: PgPool, table: string): Promise<void> {
  const c = await checkOut(pool);
  try {
    await c.query('BEGIN');
    await c.query('SELECT pg_advisory_xact_lock($1::bigint)', [SETUP_KEY.toString()]);
    await c.query(`CREATE TABLE IF NOT EXISTS ${table} (name text PRIMARY KEY, token bigint NOT NULL)`);
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    giveBack(c);
  }
}

/** How one wait in the server's queue is ended early (timeout, abort, a cycle). */
interface WaitEnd {
  /** Why it ended, once it has. */
  error: FslockError | null;
  /** The termination of its session, to await before reporting. */
  terminated: Promise<unknown>;
  end(err: FslockError): void;
}

class PgLocks implements Locks {
  readonly #pool: PgPool;
  readonly #table: string;
  /** This instance's tag in its sessions' application_name (deadlock detection). */
  readonly #tag: string;
  readonly #held = new Set<HeldLock>();
  #closed = false;

  constructor(pool: PgPool, table: string, tag: string) {
    this.#pool = pool;
    this.#table = table;
    this.#tag = tag;
    // usable detached, as the object literal it replaces was: const { lock } = locks
    this.lock = this.lock.bind(this);
    this.tryLock = this.tryLock.bind(this);
    this.withLock = this.withLock.bind(this);
    this.inspect = this.inspect.bind(this);
    this.close = this.close.bind(this);
  }

  async lock(name: string, options?: PgLockOptions): Promise<PgLock> {
    this.#assertOpen();
    checkName(name);
    const opts = checkOptionsObject(options, LOCK_OPTIONS);
    const mode = parseMode(opts.mode);
    const timeout = parseTimeout(opts.timeout);
    const signal = parseSignal(opts.signal);
    if (opts.deadlock !== undefined && typeof opts.deadlock !== 'boolean') {
      throw invalidArgType('options.deadlock', 'of type boolean', opts.deadlock);
    }
    if (signal?.aborted) throw abortError(name, signal.reason, 'before');
    const first = await this.#firstTry(name, mode);
    if (!('query' in first)) return first;
    if (timeout === 0) {
      giveBack(first);
      throw heldElsewhereError(name);
    }
    await this.#waitOnServer(first, name, mode, timeout, signal, opts.deadlock !== false);
    return this.#grant(first, name, mode);
  }

  async tryLock(name: string, options?: Omit<PgLockOptions, 'timeout' | 'signal'>): Promise<PgLock | null> {
    this.#assertOpen();
    checkName(name);
    const mode = parseMode(checkOptionsObject(options, TRY_OPTIONS).mode);
    const first = await this.#firstTry(name, mode);
    if (!('query' in first)) return first;
    giveBack(first);
    return null;
  }

  async withLock<T>(name: string, fn: (lock: PgLock) => T | Promise<T>, options?: PgLockOptions): Promise<T> {
    if (typeof fn !== 'function') throw invalidArgType('fn', 'of type function', fn);
    const l = await this.lock(name, options);
    try {
      return await fn(l);
    } finally {
      await l.release();
    }
  }

  async inspect(name: string): Promise<PgLockInfo> {
    this.#assertOpen();
    checkName(name);
    const key = BigInt.asUintN(64, lockKey(name));
    const r = await this.#pool.query(
      `SELECT l.pid, l.mode, l.granted, a.application_name, a.client_addr::text AS addr, a.client_port
         FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.classid = $1::oid AND l.objid = $2::oid AND l.objsubid = 1`,
      [(key >> 32n).toString(), (key & 0xffffffffn).toString()],
    );
    const granted = r.rows.filter((x) => x.granted === true);
    const holders = granted.map((x) => ({
      pid: Number(x.pid),
      application: String(x.application_name ?? ''),
      client: x.addr ? `${String(x.addr)}:${String(x.client_port)}` : 'local',
    }));
    const exclusive = granted.some((x) => x.mode === 'ExclusiveLock');
    return {
      name,
      held: granted.length > 0,
      mode: granted.length === 0 ? null : exclusive ? 'exclusive' : 'shared',
      holders,
      waiting: r.rows.length - granted.length,
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#held].map((l) => l.release()));
    await this.#pool.end();
  }

  #assertOpen(): void {
    if (this.#closed) throw new FslockError('ERR_LOCKS_CLOSED', 'fslock/postgres: close() was called on these locks');
  }

  /** One try on a connection of its own: the lock, or (held elsewhere) that connection, still checked out. */
  async #firstTry(name: string, mode: LockMode): Promise<PgLock | PgClient> {
    const client = await checkOut(this.#pool);
    try {
      const fn = mode === 'shared' ? 'pg_try_advisory_lock_shared' : 'pg_try_advisory_lock';
      const r = await client.query(`SELECT ${fn}($1::bigint) AS ok`, [lockKey(name).toString()]);
      if (r.rows[0]?.ok === true) return await this.#grant(client, name, mode);
    } catch (err) {
      giveBack(client, true);
      throw err;
    }
    return client;
  }

  /** The lock `client` holds now: its fencing token, taken on that connection. */
  async #grant(client: PgClient, name: string, mode: LockMode): Promise<PgLock> {
    let token: bigint;
    try {
      const r = await client.query(
        `INSERT INTO ${this.#table} AS t (name, token) VALUES ($1, 1)
         ON CONFLICT (name) DO UPDATE SET token = t.token + 1 RETURNING token`,
        [name],
      );
      token = BigInt(r.rows[0]!.token as string);
    } catch (err) {
      giveBack(client, true); // the lock goes with the connection
      throw err;
    }
    const l: HeldLock = new HeldLock(name, mode, token, client, () => this.#held.delete(l));
    this.#held.add(l);
    return l;
  }

  /**
   * Waits in the server's queue on `client` until granted. A timeout, an
   * abort or a cycle ends the wait by terminating its session
   * (pg_terminate_backend, from another connection): the server drops the
   * waiter, or the lock if it was granted at that instant. Closing the socket
   * alone would not do: a backend waiting for a lock does not read from its client.
   */
  async #waitOnServer(
    client: PgClient,
    name: string,
    mode: LockMode,
    timeout: number,
    signal: AbortSignal | undefined,
    detect: boolean,
  ): Promise<void> {
    const pool = this.#pool;
    const w: WaitEnd = {
      error: null,
      terminated: Promise.resolve(),
      end(err) {
        if (w.error) return;
        w.error = err;
        const pid = client.processID;
        if (pid) w.terminated = pool.query('SELECT pg_terminate_backend($1)', [pid]).catch(() => undefined);
        giveBack(client, true);
      },
    };
    const timer =
      timeout === Infinity
        ? undefined
        : setTimeout(() => w.end(timeoutError(name, timeout)), Math.min(timeout, 2 ** 31 - 1));
    const onAbort = () => w.end(abortError(name, signal?.reason, 'while'));
    signal?.addEventListener('abort', onAbort, { once: true });
    const checker = detect ? setInterval(() => void this.#checkCycle(client, name, w), DEADLOCK_CHECK_MS) : undefined;
    const fn = mode === 'shared' ? 'pg_advisory_lock_shared' : 'pg_advisory_lock';
    try {
      await client.query(`SELECT ${fn}($1::bigint)`, [lockKey(name).toString()]);
    } catch (err) {
      if (!w.error) {
        giveBack(client, true);
        if (errorCode(err) === '40P01') throw deadlockError(name, 'found by the server', err);
        throw err;
      }
    } finally {
      if (timer) clearTimeout(timer);
      if (checker) clearInterval(checker);
      signal?.removeEventListener('abort', onAbort);
    }
    if (w.error) {
      await w.terminated; // (granted as the wait ended: the terminated session took the lock with it)
      throw w.error;
    }
  }

  /** One look for a cycle through this instance; ends the wait on `client` if it is the victim. */
  async #checkCycle(client: PgClient, name: string, w: WaitEnd): Promise<void> {
    let r: PgQueryResult;
    try {
      r = await this.#pool.query(
        `SELECT l.pid, l.granted, l.mode, l.classid::text || ':' || l.objid::text AS key,
                coalesce(a.application_name, '') AS app, extract(epoch FROM a.query_start) AS since
           FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.objsubid = 1`,
      );
    } catch {
      return; // the next look may work
    }
    const rows: LockRow[] = r.rows.map((x) => ({
      pid: Number(x.pid),
      granted: x.granted === true,
      exclusive: x.mode === 'ExclusiveLock',
      key: String(x.key),
      app: String(x.app),
      node: nodeOf(String(x.app), Number(x.pid)),
      since: Number(x.since ?? 0),
    }));
    const cycle = findCycle(rows, `fslock#${this.#tag}`);
    if (!cycle) return;
    const members = new Set(cycle);
    const waits = rows.filter((x) => !x.granted && members.has(x.node) && x.node.startsWith('fslock#'));
    const victim = waits.sort((a, b) => b.since - a.since || b.pid - a.pid)[0];
    if (victim?.pid !== client.processID) return;
    const who = cycle.map((n) => {
      const row = rows.find((x) => x.node === n);
      return `${row?.app || 'a client'} (session ${row?.pid})`;
    });
    w.end(deadlockError(name, `${[...who, who[0]].join(' waits for ')}`));
  }
}
