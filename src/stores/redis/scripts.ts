/**
 * The Lua scripts of the Redis store: one per operation, each touching only
 * the keys of one lease (all hash-tagged `{name}`, so one Cluster slot), run
 * with EVALSHA and a fallback to EVAL when the server answers NOSCRIPT (after a
 * restart, a failover or SCRIPT FLUSH).
 *
 * Key layout (prefix `tenure:` by default):
 *   `tenure:{name}:lease`  string `t1:<token>:<holder>`, PX = the lease's TTL
 *   `tenure:{name}:token`  string `<token>`: the last token issued (no expiry)
 *   `tenure:{name}:data`   hash  field → `t1:<token>:<value>` (putFenced)
 *   `tenure:{name}:events` pub/sub channel: `released` / `acquired`
 *   `tenure:{name}:boot`   string `<run_id>:<ms>`: when a script first saw
 *                          this server run (restart guard), PX = ttl + 5 s;
 *                          or `ok:<lastsave>`: this LASTSAVE was found old
 *                          enough (restart_window), PX = ttl + 2 s
 *
 * Tokens are decimal strings between Lua and TypeScript. Lua numbers are
 * doubles, exact below 2^53; tokens are floored by the server's TIME in
 * microseconds (≈ 1.7e15 today, 2^53 ≈ 9.0e15 is reached in the year 2255),
 * so they keep increasing even when Redis loses its data.
 */
import { createHash } from "node:crypto";

/**
 * Helpers a script can ask for (each script carries only the ones it uses:
 * Redis runs a script's whole source on every call, helper definitions
 * included). HEAD comes first in every script.
 */
const HEAD = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local MAX_TOKEN = 9007199254740991
local function schema(msg)
  error({err = 'TENURE_SCHEMA ' .. msg})
end
`;

const HELPERS = {
  fmt: `
local function fmt(n)
  return string.format('%.0f', n)
end
`,
  /** returns nil, or token string, holder, token number */
  lease: `
local function lease(key)
  local v = redis.call('GET', key)
  if not v then return nil end
  local tok, holder = string.match(v, '^t1:(%d+):(.*)$')
  local n = tok and tonumber(tok)
  if not n or n < 1 or n > MAX_TOKEN then
    schema('lease key ' .. key .. ' does not hold a Tenure lease')
  end
  return tok, holder, n
end
`,
  pttl: `
local function pttl(key)
  local t = redis.call('PTTL', key)
  if t == -1 then schema('lease key ' .. key .. ' has no expiry') end
  if t < 0 then t = 0 end
  return t
end
`,
  /** the server's clock: microseconds (number) and the same as a decimal string */
  now: `
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2]), t[1] .. string.sub('00000' .. t[2], -6)
end
`,
  /**
   * Restart guard (see ACQUIRE): ms until this server may grant a free lease,
   * 0 when it may now. nowMs is the server's TIME in ms.
   *
   * Fast path, O(1): LASTSAVE. Redis counts its start as a save and only ever
   * moves LASTSAVE to the current time, so LASTSAVE is never before the
   * server's start, and now − (LASTSAVE + 1 s) (LASTSAVE is whole seconds) is
   * a lower bound of its uptime. When that bound is at least the guard, the
   * server is old enough.
   *
   * Slow path (within one guard of the start or of the last save, or when
   * LASTSAVE is refused): INFO server, two lower bounds of the uptime, either
   * enough: uptime_in_seconds less one second (the difference of two
   * whole-second clocks), and the time since a script first saw this run_id
   * (kept in bootKey, which a restart without persistence forgets and a
   * restart with it leaves under the old run_id).
   * restart_window is the server-wide part (nil: old enough, else run_id and
   * the coarse wait), restart_first the per-lease part (when a script first
   * saw this run, recorded in bootKey): RENEW_MANY asks the first once per batch.
   *
   * After a save (LASTSAVE within one guard of now), INFO is asked once per
   * lease and save, not per call: when INFO shows the server old enough, the
   * lease's bootKey records `ok:<LASTSAVE>`, and while LASTSAVE still reads
   * the same the server is the same run, so the next call stops there. That
   * relies on a restart always changing LASTSAVE: the marker is written only
   * once the server clock is past LASTSAVE's second, and a restart (which
   * sets LASTSAVE to its start, after the crash, after the marker's write)
   * then lands in a later second. Like the fast path, it assumes the
   * server's wall clock does not step back across a restart.
   */
  restartWait: `
local function restart_window(guard, now, bootKey)
  if guard <= 0 then return nil end
  local ok, saved = pcall(redis.call, 'LASTSAVE')
  local mark = nil
  if ok and type(saved) == 'number' and saved > 0 then
    if now - (saved + 1) * 1000 >= guard then return nil end
    if bootKey and now >= (saved + 1) * 1000 then
      mark = 'ok:' .. string.format('%.0f', saved)
      if redis.call('GET', bootKey) == mark then return nil end
    end
  end
  local info = redis.call('INFO', 'server')
  local up = tonumber(string.match(info, 'uptime_in_seconds:(%d+)'))
  local run = string.match(info, 'run_id:(%x+)')
  if not up or not run then return nil end
  local coarse = guard - (up - 1) * 1000
  if coarse <= 0 then
    if mark then redis.call('SET', bootKey, mark, 'PX', string.format('%.0f', guard + 2000)) end
    return nil
  end
  return run, coarse
end
local function restart_first(bootKey, run, guard, now)
  local seen = redis.call('GET', bootKey)
  if seen then
    local r, f = string.match(seen, '^(%x+):(%d+)$')
    if r == run then return tonumber(f) end
  end
  redis.call('SET', bootKey, run .. ':' .. string.format('%.0f', now), 'PX', string.format('%.0f', guard + 5000))
  return now
end
local function restart_wait(bootKey, guard, now)
  local run, coarse = restart_window(guard, now, bootKey)
  if not run then return 0 end
  local fine = guard - (now - restart_first(bootKey, run, guard, now))
  if fine <= 0 then return 0 end
  if fine < coarse then return fine end
  return coarse
end
`,
  /** last issued token as number (0 when absent) */
  counter: `
local function counter(key)
  local v = redis.call('GET', key)
  if not v then return 0, nil end
  local n = tonumber(v)
  if not n or not string.match(v, '^%d+$') or n > MAX_TOKEN then
    schema('token key ' .. key .. ' does not hold a Tenure token')
  end
  return n, v
end
`,
} as const;

type Helper = keyof typeof HELPERS;

/**
 * KEYS: lease, counter, boot. ARGV: holder, ttlMs, channel, guardMs.
 * → token (a bulk string: granted) | {0, token, holder, pttl} | {2, waitMs}
 *
 * A grant answers the bare token string, not a table: converting a Lua table
 * into a Redis reply (and parsing an array reply in the client) costs more
 * than the rest of a script's reply, and a grant is the hot path.
 *
 * A lease the caller's holder holds live keeps its term: the same token,
 * its expiry set to ttlMs from now (as RENEW does), nothing published. So a
 * late acquire of the holder never ends the term a newer acquire started.
 *
 * Restart guard: while the server has been up for less than guardMs (the
 * ttl; 0 turns it off), a free lease is not granted ({2, waitMs}). A server
 * that lost writes in a crash (no persistence, or AOF everysec) may have
 * forgotten a lease whose holder still trusts it for up to one ttl after its
 * last acknowledged renewal; that renewal happened before the crash, so one
 * ttl after the restart every such window has closed.
 *
 * The counter is swapped with GETSET (one command instead of GET + SET): the
 * new token is written first and the old counter checked after; if the old
 * counter is not a token the old value is put back before the schema error,
 * and if it is ahead of the clock (the clock stepped back) the token becomes
 * counter + 1 with a second SET. Commands on the usual path (free lease,
 * server older than the ttl): GET, TIME, LASTSAVE, GETSET, SET, PUBLISH.
 */
const ACQUIRE = `
local tok, holder, n = lease(KEYS[1])
if tok and holder ~= ARGV[1] then
  return {0, tok, holder, pttl(KEYS[1])}
end
if tok then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tok
end
local t, s = now_us()
if not tok then
  local wait = restart_wait(KEYS[3], tonumber(ARGV[4]) or 0, math.floor(t / 1000))
  if wait > 0 then return {2, wait} end
end
if n and n + 1 > t then
  t = n + 1
  s = fmt(t)
end
if t > MAX_TOKEN then schema('token of ' .. KEYS[2] .. ' would exceed 2^53') end
local old = redis.call('GETSET', KEYS[2], s)
if old then
  local c = tonumber(old)
  if not c or not string.match(old, '^%d+$') or c > MAX_TOKEN then
    redis.call('SET', KEYS[2], old)
    schema('token key ' .. KEYS[2] .. ' does not hold a Tenure token')
  end
  if c + 1 > t then
    t = c + 1
    if t > MAX_TOKEN then
      redis.call('SET', KEYS[2], old)
      schema('token of ' .. KEYS[2] .. ' would exceed 2^53')
    end
    s = fmt(t)
    redis.call('SET', KEYS[2], s)
  end
end
redis.call('SET', KEYS[1], 't1:' .. s .. ':' .. ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], 'acquired')
return s
`;

/**
 * KEYS: lease, boot. ARGV: holder, token, ttlMs, guardMs.
 * → {1} | {0, token, holder, pttl} | {0}
 * The lease value is compared whole (`t1:<token>:<holder>`, the token all
 * digits, so equal strings mean the same token and holder). A renewal that
 * finds its lease gone starts the restart guard's clock (the holder is often
 * the first to reach a restarted server).
 */
const RENEW = `
local v = redis.call('GET', KEYS[1])
if v and v == 't1:' .. ARGV[2] .. ':' .. ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {1}
end
local tok, holder = lease(KEYS[1])
if not tok then
  local t = redis.call('TIME')
  restart_wait(KEYS[2], tonumber(ARGV[4]) or 0, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  return {0}
end
return {0, tok, holder, pttl(KEYS[1])}
`;

/**
 * Many renewals in one script (LeaseStore.renewMany). KEYS: lease and boot of
 * item 1, lease and boot of item 2, … ARGV: guardMs, then holder, token,
 * ttlMs of each item. → one reply per item, in order, each as RENEW's:
 * {1} | {0, token, holder, pttl} | {0}. Each item is judged alone, exactly as
 * RENEW judges it (the same item twice is renewed twice); a key that does not
 * hold a Tenure lease answers {0} for its item instead of failing the others.
 * The restart guard's server-wide check (LASTSAVE, INFO) runs at most once
 * per batch, on the first item found gone; each gone item then starts its own
 * lease's guard clock, as RENEW does. In Redis Cluster every key of one call
 * must hash to one slot: the store sends one call per slot.
 */
const RENEW_MANY = `
local guard = tonumber(ARGV[1]) or 0
local out = {}
local asked, run, now = false, nil, 0
for i = 1, #KEYS / 2 do
  local lk = KEYS[2 * i - 1]
  local holder, tok, ttl = ARGV[3 * i - 1], ARGV[3 * i], ARGV[3 * i + 1]
  local v = redis.call('GET', lk)
  if v and v == 't1:' .. tok .. ':' .. holder then
    redis.call('PEXPIRE', lk, ttl)
    out[i] = {1}
  else
    local ok, ctok, cholder = pcall(lease, lk)
    if ok and ctok then
      local okt, left = pcall(pttl, lk)
      if okt then out[i] = {0, ctok, cholder, left} else out[i] = {0} end
    else
      if ok and guard > 0 then
        if not asked then
          asked = true
          local t = redis.call('TIME')
          now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
          run = restart_window(guard, now)
        end
        if run then restart_first(KEYS[2 * i], run, guard, now) end
      end
      out[i] = {0}
    end
  end
end
return out
`;

/**
 * Many acquires in one script (LeaseStore.acquireMany). KEYS: lease, counter
 * and boot of item 1, of item 2, … ARGV: holder, ttlMs, channel, guardMs of
 * each item. → one reply per item, in order, each as ACQUIRE's except that a
 * grant is a table too: {1, token} | {0, token, holder, pttl} | {2, waitMs}. Each item is judged
 * exactly as ACQUIRE judges it, one after the other (the same name twice: the
 * second sees the first's term; the same holder twice keeps it). Every key is checked before anything is
 * written, so a key that does not hold a Tenure lease or token fails the call
 * as a whole with nothing changed (the caller then acquires item by item).
 * The restart guard's server-wide check (LASTSAVE, INFO) runs at most once
 * per distinct guard window per call; each free lease then starts its own
 * guard clock, as ACQUIRE does. In Redis Cluster every key of one call must
 * hash to one slot: the store sends one call per slot.
 */
const ACQUIRE_MANY = `
local n = #KEYS / 3
for i = 1, n do
  local lk = KEYS[3 * i - 2]
  local tok, holder, tn = lease(lk)
  if tok and holder ~= ARGV[4 * i - 3] then pttl(lk) end
  local c = counter(KEYS[3 * i - 1])
  if not (tok and holder == ARGV[4 * i - 3]) and ((tn and tn >= MAX_TOKEN) or c >= MAX_TOKEN) then
    schema('token of ' .. KEYS[3 * i - 1] .. ' would exceed 2^53')
  end
end
local windows = {}
local out = {}
for i = 1, n do
  local lk, ck, bk = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local h, ttl, ch = ARGV[4 * i - 3], ARGV[4 * i - 2], ARGV[4 * i - 1]
  local guard = tonumber(ARGV[4 * i]) or 0
  local tok, holder, tn = lease(lk)
  if tok and holder ~= h then
    out[i] = {0, tok, holder, pttl(lk)}
  elseif tok then
    redis.call('PEXPIRE', lk, ttl)
    out[i] = {1, tok}
  else
    local t, s = now_us()
    local wait = 0
    if not tok and guard > 0 then
      local now = math.floor(t / 1000)
      local w = windows[guard]
      if w == nil then
        local run, coarse = restart_window(guard, now)
        w = false
        if run then w = {run, coarse} end
        windows[guard] = w
      end
      if w then
        local fine = guard - (now - restart_first(bk, w[1], guard, now))
        if fine > 0 then
          if fine < w[2] then wait = fine else wait = w[2] end
        end
      end
    end
    if wait > 0 then
      out[i] = {2, wait}
    else
      if tn and tn + 1 > t then t = tn + 1 end
      local c = counter(ck)
      if c + 1 > t then t = c + 1 end
      s = fmt(t)
      redis.call('SET', ck, s)
      redis.call('SET', lk, 't1:' .. s .. ':' .. h, 'PX', ttl)
      redis.call('PUBLISH', ch, 'acquired')
      out[i] = {1, s}
    end
  end
end
return out
`;

/**
 * KEYS: lease. ARGV: the lease's whole value `t1:<token>:<holder>` (built by
 * the client: one argument and no concatenation in Lua), channel. → 1 | 0.
 * The lease value is compared whole, as in RENEW.
 */
const RELEASE = `
local v = redis.call('GET', KEYS[1])
if v and v == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released')
  return 1
end
if v then lease(KEYS[1]) end
return 0
`;

/**
 * Many releases in one script (LeaseStore.releaseMany). KEYS: the lease key of
 * each item. ARGV: holder, token, channel of each item. → 1 | 0 per item, in
 * order. Each item is judged exactly as RELEASE judges it, one after the
 * other (the same term twice: the second finds it gone and answers 0), and
 * each released lease publishes its own 'released'. A key that does not hold
 * a Tenure lease answers 0 for its item instead of failing the others
 * (nothing of this store's was released there). In Redis Cluster every key
 * of one call must hash to one slot: the store sends one call per slot.
 */
const RELEASE_MANY = `
local out = {}
for i = 1, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if v and v == 't1:' .. ARGV[3 * i - 1] .. ':' .. ARGV[3 * i - 2] then
    redis.call('DEL', KEYS[i])
    redis.call('PUBLISH', ARGV[3 * i], 'released')
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
`;

/** KEYS: lease. → {token, holder, pttl} | nil */
const READ = `
local tok, holder = lease(KEYS[1])
if not tok then return nil end
return {tok, holder, pttl(KEYS[1])}
`;

/**
 * Many reads in one script, for list(). KEYS: lease keys. → per key, in order:
 * {1, token, holder, pttl} | {0} (no lease) | {2, problem} (a key that does
 * not hold a Tenure lease: named, not a reason to fail the others).
 */
const READ_MANY = `
local function problem(e)
  if type(e) == 'table' then e = e.err end
  return {2, tostring(e)}
end
local out = {}
for i = 1, #KEYS do
  local ok, tok, holder = pcall(lease, KEYS[i])
  if not ok then
    out[i] = problem(tok)
  elseif not tok then
    out[i] = {0}
  else
    local okt, left = pcall(pttl, KEYS[i])
    if okt then out[i] = {1, tok, holder, left} else out[i] = problem(left) end
  end
end
return out
`;

/** KEYS: lease. ARGV: channel. → 1 | 0 */
const FORCE_RELEASE = `
local tok = lease(KEYS[1])
if not tok then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], 'released')
return 1
`;

/**
 * KEYS: counter, data. ARGV: token, field, value, mode ('' | 'null' | 'value'), expect.
 * → 'ok' | 'fenced' | 'conflict'. The token must be the last one issued for the lease.
 */
const PUT_FENCED = `
local c, cs = counter(KEYS[1])
if not cs or cs ~= ARGV[1] then return 'fenced' end
if ARGV[4] ~= '' then
  local cur = redis.call('HGET', KEYS[2], ARGV[2])
  local curValue = nil
  if cur then
    curValue = string.match(cur, '^t1:%d+:(.*)$')
    if not curValue then schema('data key ' .. KEYS[2] .. ' holds a value Tenure did not write') end
  end
  if ARGV[4] == 'null' and curValue ~= nil then return 'conflict' end
  if ARGV[4] == 'value' and curValue ~= ARGV[5] then return 'conflict' end
end
redis.call('HSET', KEYS[2], ARGV[2], 't1:' .. ARGV[1] .. ':' .. ARGV[3])
return 'ok'
`;

/** KEYS: data. ARGV: field. → {token, value} | nil */
const GET_FENCED = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return nil end
local tok, value = string.match(cur, '^t1:(%d+):(.*)$')
if not tok then schema('data key ' .. KEYS[1] .. ' holds a value Tenure did not write') end
return {tok, value}
`;

/**
 * The token-checked write on a user's own key. KEYS: lease, userKey.
 * ARGV: token, op ('set' | 'hset'), then for set: value, pxMs ('' = none);
 * for hset: field, value. → {1} | {0, currentToken or ''}.
 * Writes only while the lease is live and its current term has this token.
 */
const FENCED_WRITE = `
local tok = lease(KEYS[1])
if not tok then return {0, ''} end
if tok ~= ARGV[1] then return {0, tok} end
if ARGV[2] == 'set' then
  if ARGV[4] ~= '' then
    redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
  else
    redis.call('SET', KEYS[2], ARGV[3])
  end
elseif ARGV[2] == 'hset' then
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
else
  error({err = 'ERR tenure: unknown fenced op ' .. tostring(ARGV[2])})
end
return {1}
`;

/** The part of a Redis client the store needs to run scripts (ioredis `Redis` and `Cluster` fit). */
export interface ScriptClient {
  evalsha(sha: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>;
  eval(script: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>;
}

/** One Lua script, run by SHA with a fallback to its source on NOSCRIPT. */
export class LuaScript {
  readonly sha: string;
  readonly source: string;
  constructor(
    readonly name: string,
    body: string,
    helpers: readonly Helper[] = [],
  ) {
    const used = (Object.keys(HELPERS) as Helper[]).filter((h) => helpers.includes(h));
    this.source = [HEAD, ...used.map((h) => HELPERS[h]), body].join("\n");
    this.sha = createHash("sha1").update(this.source).digest("hex");
  }

  async run(
    client: ScriptClient,
    keys: readonly string[],
    args: readonly string[],
  ): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (e) {
      if (e instanceof Error && e.message.startsWith("NOSCRIPT")) {
        // EVAL also loads the script into the server's cache for the next EVALSHA.
        return await client.eval(this.source, keys.length, ...keys, ...args);
      }
      throw e;
    }
  }
}

/** Every script of the store, by operation. */
export const SCRIPTS = Object.freeze({
  acquire: new LuaScript("acquire", ACQUIRE, ["fmt", "lease", "pttl", "now", "restartWait"]),
  acquireMany: new LuaScript("acquireMany", ACQUIRE_MANY, [
    "fmt",
    "lease",
    "pttl",
    "now",
    "restartWait",
    "counter",
  ]),
  renew: new LuaScript("renew", RENEW, ["lease", "pttl", "restartWait"]),
  renewMany: new LuaScript("renewMany", RENEW_MANY, ["lease", "pttl", "restartWait"]),
  release: new LuaScript("release", RELEASE, ["lease"]),
  releaseMany: new LuaScript("releaseMany", RELEASE_MANY),
  read: new LuaScript("read", READ, ["lease", "pttl"]),
  readMany: new LuaScript("readMany", READ_MANY, ["lease", "pttl"]),
  forceRelease: new LuaScript("forceRelease", FORCE_RELEASE, ["lease"]),
  putFenced: new LuaScript("putFenced", PUT_FENCED, ["counter"]),
  getFenced: new LuaScript("getFenced", GET_FENCED),
  fencedWrite: new LuaScript("fencedWrite", FENCED_WRITE, ["lease"]),
});
