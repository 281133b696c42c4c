/**
 * HMAC signing of cookie values with key rotation, and constant-time comparison. Shared by sessions,
 * signed cookies and CSRF tokens.
 *
 * @internal
 */
import * as Redacted from "effect/Redacted"
import { createHmac, createSecretKey, type KeyObject, randomBytes, timingSafeEqual } from "node:crypto"

/** @internal One key, or several newest first: sign with the first, accept any. */
export type Keys = Redacted.Redacted<string> | ReadonlyArray<Redacted.Redacted<string>>

/** @internal */
export const keyList = (keys: Keys): ReadonlyArray<Redacted.Redacted<string>> => {
  const list = Redacted.isRedacted(keys) ? [keys] : keys
  if (list.length === 0) throw new Error("at least one signing key is required")
  for (const key of list) {
    // Fewer than 32 bytes of key makes HMAC-SHA256 weaker than its output; refuse it at start.
    if (Buffer.byteLength(Redacted.value(key)) < 32)
      throw new Error("signing keys must be at least 32 bytes long")
  }
  return list
}

// Key objects, made once per key: createHmac builds one from raw key material on every call,
// which made checking one session cookie cost 31-39 us instead of about 3.
const keyObjects = new WeakMap<Redacted.Redacted<string>, KeyObject>()
const keyObject = (key: Redacted.Redacted<string>): KeyObject => {
  let object = keyObjects.get(key)
  if (object === undefined) {
    object = createSecretKey(Buffer.from(Redacted.value(key)))
    keyObjects.set(key, object)
  }
  return object
}

const mac = (key: Redacted.Redacted<string>, value: string): string =>
  createHmac("sha256", keyObject(key)).update(value).digest("base64url")

/** @internal `value.signature`, signed with the newest key. */
export const sign = (value: string, keys: ReadonlyArray<Redacted.Redacted<string>>): string =>
  `${value}.${mac(keys[0]!, value)}`

/**
 * @internal The value of a signed string if any key signed it. Every key is tried, so the time taken
 * does not tell which key matched or how much of the signature was right.
 */
export const unsign = (
  signed: string,
  keys: ReadonlyArray<Redacted.Redacted<string>>
): string | undefined => {
  const dot = signed.lastIndexOf(".")
  if (dot <= 0) return undefined
  const value = signed.slice(0, dot)
  const given = signed.slice(dot + 1)
  let ok = false
  for (const key of keys) {
    if (sameMac(given, mac(key, value))) ok = true
  }
  return ok ? value : undefined
}

/**
 * @internal Whether a MAC as sent equals the one computed. A MAC's length is public (it follows from
 * the hash), so only its bytes are compared, in constant time: one HMAC per check instead of the
 * three `constantTimeEqual` would take.
 */
export const sameMac = (given: string, expected: string): boolean => {
  const a = Buffer.from(given)
  const b = Buffer.from(expected)
  return a.length === b.length && timingSafeEqual(a, b)
}

/**
 * @internal Compares two strings in time that depends only on their lengths (both are hashed first,
 * so even the length of the secret does not leak through an early exit).
 */
export const constantTimeEqual = (a: string | Uint8Array, b: string | Uint8Array): boolean => {
  const ha = createHmac("sha256", hashKey).update(a).digest()
  const hb = createHmac("sha256", hashKey).update(b).digest()
  return timingSafeEqual(ha, hb)
}

const hashKey = createSecretKey(randomBytes(32))

/** @internal A random token: `bytes` random bytes, base64url. */
export const randomToken = (bytes = 32): string => randomBytes(bytes).toString("base64url")
