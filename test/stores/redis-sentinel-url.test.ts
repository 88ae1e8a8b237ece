import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isConfigError } from "../../src/errors.js";
import { openStore, STORE_SCHEMES } from "../../src/open.js";
import { parseSentinelUrl } from "../../src/stores/redis/index.js";

const SECRET = "hunter2pw";

/** The ConfigError `f` throws: its field and message (the secret must be in neither). */
async function configError(f: () => unknown): Promise<{ field: string; message: string }> {
  try {
    await f();
  } catch (e) {
    assert.ok(isConfigError(e), `not a ConfigError: ${String(e)}`);
    assert.doesNotMatch(`${e.message}\n${e.stack}`, /hunter2/);
    return { field: e.field, message: e.message };
  }
  assert.fail("no ConfigError was thrown");
}

describe("redis+sentinel:// URLs", () => {
  it("parses sentinels, master name, db and both sets of credentials", () => {
    assert.deepEqual(
      parseSentinelUrl(
        `redis+sentinel://app:${SECRET}@10.0.0.1:26380,sentinel-b,[::1]:5000/my%2Dmaster?db=3&sentinelPassword=s%40p&prefix=x:`,
      ),
      {
        sentinels: [
          { host: "10.0.0.1", port: 26380 },
          { host: "sentinel-b", port: 26379 },
          { host: "::1", port: 5000 },
        ],
        name: "my-master",
        db: 3,
        username: "app",
        password: SECRET,
        sentinelPassword: "s@p",
        params: [["prefix", "x:"]],
      },
    );
    const p = parseSentinelUrl("REDIS+SENTINEL://:pw%3A1@h:1/m/2?sentinelUsername=s");
    assert.deepEqual(
      [p.username, p.password, p.db, p.name, p.sentinelUsername, p.sentinels],
      [undefined, "pw:1", 2, "m", "s", [{ host: "h", port: 1 }]],
    );
    // a lone user info is a password, as Redis clients take it
    assert.equal(parseSentinelUrl(`redis+sentinel://${SECRET}@h/m`).password, SECRET);
    assert.ok(STORE_SCHEMES.includes("redis+sentinel:"));
  });

  it("a bad URL is a ConfigError naming the part and what is accepted, with no secret in it", async () => {
    const cases: [string, RegExp, RegExp][] = [
      [`redis+sentinel://u:${SECRET}@/m`, /^store$/, /names no sentinel host.*host:port/],
      [`redis+sentinel://u:${SECRET}@h:1`, /^store$/, /master name the sentinels monitor/],
      [`redis+sentinel://u:${SECRET}@h:1/`, /^store$/, /master name/],
      [`redis+sentinel://u:${SECRET}@h:1/m/x`, /^store \/db$/, /database number from 0 to 99/],
      [`redis+sentinel://u:${SECRET}@h:1/m/1/2`, /^store$/, /master name/],
      [`redis+sentinel://u:${SECRET}@h:99999/m`, /^store$/, /"h:99999".*port 1–65535/],
      [`redis+sentinel://u:${SECRET}@h:1,,h:2/m`, /^store$/, /sentinel "" .*host\[:port\]/],
      [`redis+sentinel://u:${SECRET}@h:x/m`, /^store$/, /not host\[:port\]/],
      [`redis+sentinel://u:${SECRET}@h/m?db=abc`, /^store \?db$/, /database number/],
      [`redis+sentinel://u:${SECRET}@h/m?pw=%zz`, /^store \?pw$/, /percent-encoded/],
      [`redis+sentinel:h/m?sentinelPassword=${SECRET}`, /^store$/, /expected redis\+sentinel:\/\//],
    ];
    for (const [url, field, msg] of cases) {
      const e = await configError(() => parseSentinelUrl(url));
      assert.match(e.field, field, url);
      assert.match(e.message, msg, url);
    }
    // through openStore: the same errors, and unknown options name what is accepted
    const e = await configError(() =>
      openStore(`redis+sentinel://u:${SECRET}@127.0.0.1:1/m?bogus=1&sentinelPassword=${SECRET}`),
    );
    assert.equal(e.field, "store ?bogus");
    assert.match(e.message, /accepted: .*prefix.*db, sentinelUsername, sentinelPassword/);
    const f = await configError(() => openStore(`redis+sentinel://u:${SECRET}@127.0.0.1:1`));
    assert.match(f.message, /redis\+sentinel:\/\/u:\*\*\*@127\.0\.0\.1:1/);
    const g = await configError(() => openStore("redis+sentinel://127.0.0.1:1/m?family=5"));
    assert.equal(g.field, "store ?family");
  });
});
