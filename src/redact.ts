/**
 * Redaction of credentials from URLs, messages and log lines: one home, a
 * leaf module (the logger and every store use it).
 */
/**
 * Names of URL query parameters (and libpq-style `key=value` words) whose value
 * is a credential: `password`, `sslpassword`, `sslkey`, `token`, `access_token`,
 * `api_key`, `secret`, `auth`, `credentials` and their variants.
 */
export const SECRET_PARAM =
  /^[a-z0-9_.-]*(?:pass(?:word|wd)?|pwd|secret|token|key|auth|credential)[a-z0-9_.-]*$/i;

const USERINFO = /([a-z][a-z0-9+.-]*:\/\/)([^/?#\s"'`]*)@/gi;
/** `?key=value` / `&key=value`: any secret-named parameter of a query string. */
const QUERY_PARAMS = /([?&])([a-z0-9_.-]+)=([^&\s#"'`,)]*)/gi;
/**
 * `key=value` in free text (libpq connection strings, driver messages): only
 * the unmistakable credential keys, so log fields such as Tenure's own
 * `token=17` (a fencing token, not a secret) stay readable.
 */
const WORD_PARAMS =
  /(^|[\s,;("'`])(password|passwd|pwd|sslpassword|sslkey|secret|client_secret|api_?key|access_token|auth_token|apitoken)=([^&\s#"'`,)]*)/gi;

/**
 * Removes credentials from a string (an error message, a log line, a URL):
 * the user info of anything URL-shaped (`user:***@`; a user info without a
 * colon, which some drivers take as the password, becomes `***@`) and the
 * value of every secret-named query parameter (`?password=***`,
 * `&sslkey=***`, `?token=***`, see {@link SECRET_PARAM}), and of the
 * credential keys of libpq-style text (`password=***`, `sslkey=***`; not
 * `token=`, which in Tenure's logs is a fencing token).
 */
export function redactSecrets(s: string): string {
  let out = String(s);
  for (const k of KNOWN_SECRETS) if (out.includes(k)) out = out.split(k).join("***");
  return out
    .replace(USERINFO, (_m, scheme: string, info: string) => {
      const i = info.indexOf(":");
      return `${scheme}${i < 0 ? "***" : `${info.slice(0, i)}:***`}@`;
    })
    .replace(QUERY_PARAMS, (m, lead: string, key: string, value: string) =>
      SECRET_PARAM.test(key) && value !== "" && value !== "***" ? `${lead}${key}=***` : m,
    )
    .replace(WORD_PARAMS, (m, lead: string, key: string, value: string) =>
      value !== "" && value !== "***" ? `${lead}${key}=***` : m,
    );
}

/** A URL with every credential replaced by `***` (see {@link redactSecrets}), for logs and errors. */
export function redactUrl(url: string): string {
  return redactSecrets(url);
}

/**
 * The credentials in a store URL, raw and percent-decoded: the password (or a
 * lone user info) and the value of every secret-named query parameter. Stores
 * scrub these exact strings from driver messages that quote them without the
 * URL around them (a key file path in `ENOENT … open '…'`, an echoed token).
 */
export function urlSecrets(url: string): string[] {
  const out = new Set<string>();
  const add = (v: string | undefined) => {
    if (!v) return;
    out.add(v);
    try {
      out.add(decodeURIComponent(v));
    } catch {}
  };
  const m = /^[a-z][a-z0-9+.-]*:\/\/([^/?#\s]*)@/i.exec(url.trim());
  if (m) {
    const i = m[1]!.indexOf(":");
    add(i < 0 ? m[1] : m[1]!.slice(i + 1));
  }
  const q = url.indexOf("?");
  if (q >= 0) {
    for (const part of url.slice(q + 1).split(/[&#]/)) {
      const eq = part.indexOf("=");
      if (eq > 0 && SECRET_PARAM.test(part.slice(0, eq))) add(part.slice(eq + 1));
    }
  }
  // Very short values would scrub ordinary words; they are still hidden wherever the URL is shown.
  return [...out].filter((v) => v.length >= MIN_SCRUBBED);
}

const MIN_SCRUBBED = 4;
/** Credentials of every store URL this process opened: scrubbed from every message Tenure makes. */
const KNOWN_SECRETS = new Set<string>();
const MAX_KNOWN_SECRETS = 1000;

/**
 * Remembers the credentials of `url` (see {@link urlSecrets}) so that
 * {@link redactSecrets} removes them even where a driver quotes one without
 * its URL. `openStore` calls it for every URL.
 */
export function registerUrlSecrets(url: string): void {
  for (const s of urlSecrets(url)) {
    if (KNOWN_SECRETS.size >= MAX_KNOWN_SECRETS) break;
    KNOWN_SECRETS.add(s);
  }
}

/** Replaces each of `secrets` in `msg` by `***`, then applies {@link redactSecrets}. */
export function scrubSecrets(msg: string, secrets: readonly string[]): string {
  let out = String(msg);
  for (const s of secrets) if (s.length > 0) out = out.split(s).join("***");
  return redactSecrets(out);
}
