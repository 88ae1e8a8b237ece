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
 *                          this server run (restart guard), PX = ttl + 5 s
 *
 * Tokens are decimal strings between Lua and TypeScript. Lua numbers are
 * doubles, exact below 2^53; tokens are floored by the server's TIME in
 * microseconds (≈ 1.7e15 today, 2^53 ≈ 9.0e15 is reached in the year 2255),
 * so they keep increasing even when Redis loses its data.
 */
import { createHash } from "node:crypto";

/** Shared helpers, prepended to every script. */
const PRELUDE = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local MAX_TOKEN = 9007199254740991
local function schema(msg)
  error({err = 'TENURE_SCHEMA ' .. msg})
end
local function fmt(n)
  return string.format('%.0f', n)
end
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
-- returns nil, or token string, holder, token number
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
local function pttl(key)
  local t = redis.call('PTTL', key)
  if t == -1 then schema('lease key ' .. key .. ' has no expiry') end
  if t < 0 then t = 0 end
  return t
end
-- Restart guard (see ACQUIRE): ms until this server may grant a free lease,
-- 0 when it may now. Two lower bounds of the server's uptime, either enough:
-- uptime_in_seconds less one second (it is the difference of two
-- whole-second clocks), and the time since a script first saw this run_id
-- (kept in bootKey, which a restart without persistence forgets and a
-- restart with it leaves under the old run_id).
local function restart_wait(bootKey, guard)
  if guard <= 0 then return 0 end
  local info = redis.call('INFO', 'server')
  local up = tonumber(string.match(info, 'uptime_in_seconds:(%d+)'))
  local run = string.match(info, 'run_id:(%x+)')
  if not up or not run then return 0 end
  local coarse = guard - (up - 1) * 1000
  if coarse <= 0 then return 0 end
  local now = math.floor(now_us() / 1000)
  local first = nil
  local seen = redis.call('GET', bootKey)
  if seen then
    local r, f = string.match(seen, '^(%x+):(%d+)$')
    if r == run then first = tonumber(f) end
  end
  if not first then
    first = now
    redis.call('SET', bootKey, run .. ':' .. fmt(first), 'PX', fmt(guard + 5000))
  end
  local fine = guard - (now - first)
  if fine <= 0 then return 0 end
  if fine < coarse then return fine end
  return coarse
end
-- last issued token as number (0 when absent)
local function counter(key)
  local v = redis.call('GET', key)
  if not v then return 0, nil end
  local n = tonumber(v)
  if not n or not string.match(v, '^%d+$') or n > MAX_TOKEN then
    schema('token key ' .. key .. ' does not hold a Tenure token')
  end
  return n, v
end
`;

/**
 * KEYS: lease, counter, boot. ARGV: holder, ttlMs, channel, guardMs.
 * → {1, token} | {0, token, holder, pttl} | {2, waitMs}
 *
 * Restart guard: while the server has been up for less than guardMs (the
 * ttl; 0 turns it off), a free lease is not granted ({2, waitMs}). A server
 * that lost writes in a crash (no persistence, or AOF everysec) may have
 * forgotten a lease whose holder still trusts it for up to one ttl after its
 * last acknowledged renewal; that renewal happened before the crash, so one
 * ttl after the restart every such window has closed.
 */
const ACQUIRE = `
local tok, holder, n = lease(KEYS[1])
if tok and holder ~= ARGV[1] then
  return {0, tok, holder, pttl(KEYS[1])}
end
if not tok then
  local wait = restart_wait(KEYS[3], tonumber(ARGV[4]) or 0)
  if wait > 0 then return {2, wait} end
end
local c = counter(KEYS[2])
local t = now_us()
if c + 1 > t then t = c + 1 end
if n and n + 1 > t then t = n + 1 end
if t > MAX_TOKEN then schema('token of ' .. KEYS[2] .. ' would exceed 2^53') end
local s = fmt(t)
redis.call('SET', KEYS[2], s)
redis.call('SET', KEYS[1], 't1:' .. s .. ':' .. ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], 'acquired')
return {1, s}
`;

/**
 * KEYS: lease, boot. ARGV: holder, token, ttlMs, guardMs.
 * → {1} | {0, token, holder, pttl} | {0}
 * A renewal that finds its lease gone starts the restart guard's clock (the
 * holder is often the first to reach a restarted server).
 */
const RENEW = `
local tok, holder = lease(KEYS[1])
if not tok then
  restart_wait(KEYS[2], tonumber(ARGV[4]) or 0)
  return {0}
end
if tok == ARGV[2] and holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {1}
end
return {0, tok, holder, pttl(KEYS[1])}
`;

/** KEYS: lease. ARGV: holder, token, channel. → 1 | 0 */
const RELEASE = `
local tok, holder = lease(KEYS[1])
if tok and tok == ARGV[2] and holder == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[3], 'released')
  return 1
end
return 0
`;

/** KEYS: lease. → {token, holder, pttl} | nil */
const READ = `
local tok, holder = lease(KEYS[1])
if not tok then return nil end
return {tok, holder, pttl(KEYS[1])}
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
  ) {
    this.source = `${PRELUDE}\n${body}`;
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
  acquire: new LuaScript("acquire", ACQUIRE),
  renew: new LuaScript("renew", RENEW),
  release: new LuaScript("release", RELEASE),
  read: new LuaScript("read", READ),
  forceRelease: new LuaScript("forceRelease", FORCE_RELEASE),
  putFenced: new LuaScript("putFenced", PUT_FENCED),
  getFenced: new LuaScript("getFenced", GET_FENCED),
  fencedWrite: new LuaScript("fencedWrite", FENCED_WRITE),
});
