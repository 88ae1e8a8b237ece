/**
 * Every statement the PostgreSQL store sends. Each operation is ONE statement
 * in autocommit, with the server's `now()` as the clock: no session state, no
 * advisory locks, no named prepared statements (PgBouncer transaction mode).
 * Parameters are sent as text and cast in SQL, so both drivers bind alike.
 */

/** Schema-qualified, quoted table names and the notification channel of one store. */
export interface Tables {
  leases: string;
  fenced: string;
}

/** Milliseconds left; `Infinity` (never an error) for an infinite timestamp, which the store reports as garbage. */
export const ms = (col: string) =>
  `((extract(epoch FROM ${col}) - extract(epoch FROM now())) * 1000)::float8`;
export const ttl = (p: string) => `now() + ${p}::bigint * interval '1 millisecond'`;
/**
 * The floor of a new term's token: the server's clock in microseconds since
 * the epoch (≈ 1.7e15 today; 2^53 − 1 ≈ 9.0e15 is reached in the year 2255,
 * so tokens stay exact as JS numbers and in Redis's Lua, which uses the same
 * floor). A standby promoted after it missed the last terms has an older
 * row, but its clock has moved on: its next token is still larger than any
 * the old primary issued, as long as its clock is not behind the old
 * primary's by more than the failover took. `clock_timestamp()`, not
 * `now()`: the time of the write, even after a wait for the row lock.
 */
export const tokenFloor = `floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint`;

export function ddl(t: Tables): string[] {
  return [
    `CREATE TABLE IF NOT EXISTS ${t.leases} (
       name text PRIMARY KEY,
       holder text,
       token bigint NOT NULL,
       expires_at timestamptz NOT NULL
     )`,
    `CREATE TABLE IF NOT EXISTS ${t.fenced} (
       name text NOT NULL,
       key text NOT NULL,
       value text NOT NULL,
       token bigint NOT NULL,
       PRIMARY KEY (name, key)
     )`,
  ];
}

/** Fails with 42P01/42703 when the tables are missing or have other columns. */
export const probe = (t: Tables) =>
  `SELECT l.name, l.holder, l.token, l.expires_at, f.key, f.value, f.token
   FROM ${t.leases} l, ${t.fenced} f WHERE false`;

/**
 * Acquire: one statement that never waits on another transaction's row lock.
 * `cur` reads the row from the statement's snapshot. `lk` locks it
 * (`FOR NO KEY UPDATE SKIP LOCKED`) only when the snapshot shows it free,
 * expired or ours; a row held by someone else is not locked at all, so a
 * follower's try does not queue behind a renewal, a release or a caller's
 * `fence` (`FOR SHARE`). Under READ COMMITTED, locking a row that changed
 * after the snapshot re-checks the condition against the newest committed
 * version (and skips it when that version is locked): exactly one racer
 * locks a takeable row, and only it updates. The token of a new term is
 * `max(previous + 1, server clock in µs)` ({@link tokenFloor}), in the same
 * statement; a row the caller's holder holds live keeps its token (the term
 * goes on, extended as by a renewal), so a late acquire of the holder never
 * ends the term a newer acquire of it started. A missing row is inserted (`ON CONFLICT DO NOTHING`: a racing
 * insert of the same new name waits only for the other insert's commit).
 *
 * One row comes back: `won`; or the live holder of the snapshot when it is
 * someone else; or `busy` (no holder named) when the snapshot said takeable
 * but the row was locked or changed after it: the term in force is being
 * decided by another transaction right now, so the caller retries shortly.
 */
export const acquire = (t: Tables) =>
  `WITH cur AS (
     SELECT c.holder, c.token, c.expires_at,
            (c.holder IS NULL OR c.expires_at <= now() OR c.holder = $2::text) AS takeable
     FROM ${t.leases} c WHERE c.name = $1::text
   ), lk AS (
     SELECT k.name FROM ${t.leases} k
     WHERE k.name = $1::text
       AND (k.holder IS NULL OR k.expires_at <= now() OR k.holder = $2::text)
     FOR NO KEY UPDATE SKIP LOCKED
   ), up AS (
     UPDATE ${t.leases} l
     SET holder = $2::text,
         token = CASE WHEN l.holder = $2::text AND l.expires_at > now() THEN l.token
                      ELSE greatest(l.token + 1, ${tokenFloor}) END,
         expires_at = ${ttl("$3")}
     FROM lk
     WHERE l.name = lk.name
       AND (l.holder IS NULL OR l.expires_at <= now() OR l.holder = $2::text)
     RETURNING l.token
   ), ins AS (
     INSERT INTO ${t.leases} (name, holder, token, expires_at)
     SELECT $1::text, $2::text, ${tokenFloor}, ${ttl("$3")}
     WHERE NOT EXISTS (SELECT 1 FROM cur)
     ON CONFLICT (name) DO NOTHING
     RETURNING token
   ), won AS (SELECT token FROM up UNION ALL SELECT token FROM ins)
   SELECT true AS won, false AS busy, NULL::text AS holder, w.token::text AS token,
          NULL::float8 AS ms
   FROM won w
   UNION ALL
   SELECT false, false, c.holder, c.token::text, ${ms("c.expires_at")}
   FROM cur c
   WHERE NOT EXISTS (SELECT 1 FROM won) AND NOT c.takeable
   UNION ALL
   SELECT false, true, NULL, NULL, NULL
   WHERE NOT EXISTS (SELECT 1 FROM won)
     AND NOT EXISTS (SELECT 1 FROM cur WHERE NOT takeable)`;

/**
 * Renew: the row must hold the term and be live. Not renewed: the live holder
 * from the statement's snapshot, but never the term itself: a term the
 * snapshot still shows that the row lock's re-check found gone (released or
 * taken between the snapshot and the lock) answers "nobody", not itself.
 */
export const renew = (t: Tables) =>
  `WITH up AS (
     UPDATE ${t.leases} SET expires_at = ${ttl("$4")}
     WHERE name = $1::text AND holder = $2::text AND token = $3::bigint AND expires_at > now()
     RETURNING 1
   )
   SELECT true AS won, NULL::text AS holder, NULL::text AS token, NULL::float8 AS ms FROM up
   UNION ALL
   SELECT false, c.holder, c.token::text, ${ms("c.expires_at")}
   FROM ${t.leases} c
   WHERE c.name = $1::text AND NOT EXISTS (SELECT 1 FROM up)
     AND c.holder IS NOT NULL AND c.expires_at > now()
     AND NOT (c.holder = $2::text AND c.token = $3::bigint)`;

/**
 * Many renewals in one statement (one commit, one WAL flush): renewMany.
 * $1..$4 are arrays (names, holders, tokens, ttls in ms) of equal length;
 * no two elements may share name, holder and token (then two input rows
 * would match one lease row in `UPDATE … FROM`, which is ambiguous). Rows of
 * one name with different holders or tokens are fine: a lease row has one
 * holder and one token, so at most one of them matches it. One row per
 * input, `i` its 1-based position: `won`, else the live holder read from the
 * statement's snapshot (as in {@link renew}), never the item's own term. Rows are locked in name order,
 * so two batches over the same leases cannot deadlock.
 */
export const renewMany = (t: Tables) =>
  `WITH t AS (
     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
       WITH ORDINALITY AS t(name, holder, token, ttl, i)
   ), locked AS (
     SELECT l.name FROM ${t.leases} l JOIN t USING (name)
     WHERE l.holder = t.holder AND l.token = t.token AND l.expires_at > now()
     ORDER BY l.name FOR NO KEY UPDATE OF l
   ), up AS (
     UPDATE ${t.leases} l SET expires_at = ${ttl("t.ttl")}
     FROM t, locked
     WHERE l.name = locked.name AND t.name = locked.name
       AND l.holder = t.holder AND l.token = t.token AND l.expires_at > now()
     RETURNING l.name, l.holder, l.token
   )
   SELECT t.i::int AS i, t.name, (up.name IS NOT NULL) AS won, c.holder, c.token::text AS token,
          CASE WHEN c.name IS NULL THEN NULL ELSE ${ms("c.expires_at")} END AS ms
   FROM t
   LEFT JOIN up ON up.name = t.name AND up.holder = t.holder AND up.token = t.token
   LEFT JOIN ${t.leases} c ON up.name IS NULL AND c.name = t.name
     AND c.holder IS NOT NULL AND c.expires_at > now()
     AND NOT (c.holder = t.holder AND c.token = t.token)`;

/** Release keeps the token in the row; `pg_notify` is sent on commit of the same statement. */
export const release = (t: Tables) =>
  `WITH up AS (
     UPDATE ${t.leases} SET holder = NULL, expires_at = now()
     WHERE name = $1::text AND holder = $2::text AND token = $3::bigint AND expires_at > now()
     RETURNING name
   )
   SELECT pg_notify($4::text, up.name) FROM up`;

/**
 * Many releases in one statement (one commit, one WAL flush): releaseMany.
 * $1..$3 are arrays (names, holders, tokens) of equal length with no two
 * elements sharing name, holder and token (the caller sends each term once);
 * $4 the channel. Rows are locked in name order, so two batches over the same
 * leases cannot deadlock. One row per released term (its name, holder and
 * token), each also sending its `pg_notify` on commit. A name given with two
 * different terms matches at most one: a row has one holder and one token.
 */
export const releaseMany = (t: Tables) =>
  `WITH t AS (
     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) AS t(name, holder, token)
   ), locked AS (
     SELECT l.name FROM ${t.leases} l JOIN t USING (name)
     WHERE l.holder = t.holder AND l.token = t.token AND l.expires_at > now()
     ORDER BY l.name FOR NO KEY UPDATE OF l
   ), up AS (
     UPDATE ${t.leases} l SET holder = NULL, expires_at = now()
     FROM t, locked
     WHERE l.name = locked.name AND t.name = locked.name
       AND l.holder = t.holder AND l.token = t.token AND l.expires_at > now()
     RETURNING l.name, t.holder, t.token::text AS token
   )
   SELECT up.name, up.holder, up.token, pg_notify($4::text, up.name) FROM up`;

export const forceRelease = (t: Tables) =>
  `WITH up AS (
     UPDATE ${t.leases} SET holder = NULL, expires_at = now()
     WHERE name = $1::text AND holder IS NOT NULL AND expires_at > now()
     RETURNING name
   )
   SELECT pg_notify($2::text, up.name) FROM up`;

export const read = (t: Tables) =>
  `SELECT name, holder, token::text AS token, ${ms("expires_at")} AS ms FROM ${t.leases}
   WHERE name = $1::text AND holder IS NOT NULL AND expires_at > now()`;

/** The raw token of a row, for naming it in an error. */
export const rawToken = (t: Tables) =>
  `SELECT token::text AS token FROM ${t.leases} WHERE name = $1::text`;

export const list = (t: Tables) =>
  `SELECT name, holder, token::text AS token, ${ms("expires_at")} AS ms FROM ${t.leases}
   WHERE holder IS NOT NULL AND expires_at > now() ORDER BY name`;

/**
 * Token-checked write: $1 name, $2 token, $3 key, $4 value, $5 holder,
 * $6 expected value. Only the term in force may write: the row's holder and
 * token are the term's and it has not expired (the token alone is not
 * enough: a standby promoted with an older row may have handed the same token
 * to another holder, see {@link tokenFloor}). `FOR SHARE` on the lease row
 * makes a concurrent acquire (an UPDATE of that row) wait for this statement;
 * if an acquire committed first, READ COMMITTED re-checks the newest row
 * version and the term no longer matches: `lease_ok` = 0.
 */
export const putFenced = (t: Tables, mode: "any" | "absent" | "equals") => {
  const lease = `l AS (SELECT 1 FROM ${t.leases}
                 WHERE name = $1::text AND holder = $5::text AND token = $2::bigint
                   AND expires_at > now()
                 FOR SHARE)`;
  const write =
    mode === "equals"
      ? `w AS (UPDATE ${t.fenced} f SET value = $4::text, token = $2::bigint FROM l
               WHERE f.name = $1::text AND f.key = $3::text AND f.value = $6::text RETURNING 1)`
      : `w AS (INSERT INTO ${t.fenced} (name, key, value, token)
               SELECT $1::text, $3::text, $4::text, $2::bigint FROM l
               ON CONFLICT (name, key) DO ${
                 mode === "absent"
                   ? "NOTHING"
                   : "UPDATE SET value = excluded.value, token = excluded.token"
               }
               RETURNING 1)`;
  return `WITH ${lease}, ${write}
          SELECT (SELECT count(*) FROM l)::int AS lease_ok, (SELECT count(*) FROM w)::int AS written`;
};

export const getFenced = (t: Tables) =>
  `SELECT value, token::text AS token FROM ${t.fenced} WHERE name = $1::text AND key = $2::text`;

/**
 * The fence, run inside the caller's transaction: $1 name, $2 token,
 * $3 holder. The row must be the term in force: its holder and token are the
 * term's (the token alone is not enough, see {@link putFenced}) and it has
 * not expired. `FOR SHARE` holds the lease row until that transaction ends,
 * so no newer term can be acquired (its UPDATE waits) before the caller's
 * writes commit or roll back.
 * `clock_timestamp()`, not `now()`: the transaction may have started long ago.
 *
 * It also lowers `idle_in_transaction_session_timeout` for this transaction
 * (SET LOCAL, through `set_config(…, true)`) to the time the lease has left,
 * unless the session's own setting is already lower: a leader that stops
 * (SIGSTOP, a long pause, a lost network) inside a fenced transaction is
 * disconnected by the server when its lease would have expired, so its
 * transaction rolls back and the share lock cannot hold a failover off.
 * While the transaction is open the row cannot be renewed either, so the
 * lease really does end then.
 */
export const fence = (t: Tables) =>
  `SELECT token::text AS token,
     set_config('idle_in_transaction_session_timeout',
       least(greatest(1, ceil(extract(epoch FROM expires_at - clock_timestamp()) * 1000))::bigint,
             (SELECT nullif(setting::bigint, 0) FROM pg_settings
               WHERE name = 'idle_in_transaction_session_timeout'))::text,
       true) AS idle_limit_ms
   FROM ${t.leases}
   WHERE name = $1::text AND token = $2::bigint AND holder = $3::text
     AND expires_at > clock_timestamp()
   FOR SHARE`;

export const fenceCurrent = (t: Tables) =>
  `SELECT token::text AS token FROM ${t.leases}
   WHERE name = $1::text AND holder IS NOT NULL AND expires_at > clock_timestamp()`;
