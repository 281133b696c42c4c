/**
 * Standard Webhooks signatures: `v1` (HMAC-SHA256 with a `whsec_` secret) and `v1a` (ed25519), one
 * entry per key so a sender can sign with old and new keys while a secret rotates. Use `sign` on the
 * sending side and `verify` (or the Receiver middleware, which wraps it) on the receiving side.
 *
 * Key encodings (the Standard Webhooks prefixes; everything base64, standard alphabet):
 * - `v1`: `whsec_` + base64 of 24–64 random bytes (the HMAC key is the decoded bytes).
 * - `v1a`: private key `whsk_` + base64 of the 32-byte ed25519 seed (a 64-byte seed‖public key, as Go's
 *   `ed25519.PrivateKey` writes it, is accepted too); public key `whpk_` + base64 of the raw 32-byte
 *   public key.
 *
 * Failures, in the order they are checked: `MissingHeader` and `MalformedHeader` (400), then
 * `InvalidSignature` (401), then `TimestampTooOld` / `TimestampTooNew` (401). The signature is checked
 * before the timestamp so an unauthenticated client learns nothing about our clock; error bodies never
 * carry the signatures or keys.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { Auth, HttpError } from "@strata/core"
import {
  createHmac,
  createSecretKey,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign as cryptoSign,
  verify as cryptoVerify
} from "node:crypto"

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/**
 * A signing key. `v1`: the `whsec_…` secret as given. `v1a`: the `whsk_…` private key and the
 * `whpk_…` public key receivers verify with.
 *
 * @category models
 */
export type Secret =
  | { readonly version: "v1"; readonly key: Redacted.Redacted<string> }
  | {
      readonly version: "v1a"
      readonly privateKey: Redacted.Redacted<string>
      readonly publicKey: string
    }

/**
 * A key a receiver verifies with: a `v1` secret, or a `v1a` public key alone (a `Secret` is one too).
 *
 * @category models
 */
export type VerificationKey =
  | { readonly version: "v1"; readonly key: Redacted.Redacted<string> }
  | { readonly version: "v1a"; readonly publicKey: string }

const base64 = /^[A-Za-z0-9+/]*={0,2}$/

const decodeBase64 = (what: string, text: string): Buffer => {
  if (!base64.test(text)) throw new Error(`${what} is not base64`)
  return Buffer.from(text, "base64")
}

const v1KeyBytes = (whsec: string): Buffer => {
  const bytes = decodeBase64("a whsec_ secret", whsec.startsWith("whsec_") ? whsec.slice(6) : whsec)
  if (bytes.length < 24 || bytes.length > 64)
    throw new Error("a whsec_ secret must hold 24 to 64 bytes (Standard Webhooks)")
  return bytes
}

/**
 * A `v1` secret from its `whsec_<base64>` text (the bare base64 is accepted too). Throws at startup on
 * a secret that is not base64 or holds fewer than 24 or more than 64 bytes.
 *
 * @example
 * ```ts
 * const secret = Signature.secretV1("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
 * ```
 * @category constructors
 */
export const secretV1 = (whsec: string): Secret => {
  const bytes = v1KeyBytes(whsec)
  return { version: "v1", key: Redacted.make(`whsec_${bytes.toString("base64")}`) }
}

/**
 * A fresh random `v1` secret (32 bytes).
 *
 * @category constructors
 */
export const generateV1 = (): Secret => ({
  version: "v1",
  key: Redacted.make(`whsec_${randomBytes(32).toString("base64")}`)
})

// DER prefixes that wrap a raw 32-byte ed25519 seed (PKCS#8) or public key (SPKI).
const pkcs8Prefix = Buffer.from("302e020100300506032b657004220420", "hex")
const spkiPrefix = Buffer.from("302a300506032b6570032100", "hex")

const stripPrefix = (prefix: string, text: string): string =>
  text.startsWith(prefix) ? text.slice(prefix.length) : text

const privateKeyObject = (whsk: string): KeyObject => {
  const bytes = decodeBase64("a whsk_ private key", stripPrefix("whsk_", whsk))
  if (bytes.length !== 32 && bytes.length !== 64)
    throw new Error("a whsk_ private key must hold a 32-byte ed25519 seed (or seed and public key, 64 bytes)")
  return createPrivateKey({
    key: Buffer.concat([pkcs8Prefix, bytes.subarray(0, 32)]),
    format: "der",
    type: "pkcs8"
  })
}

const publicKeyObject = (whpk: string): KeyObject => {
  const bytes = decodeBase64("a whpk_ public key", stripPrefix("whpk_", whpk))
  if (bytes.length !== 32) throw new Error("a whpk_ public key must hold a raw 32-byte ed25519 key")
  return createPublicKey({ key: Buffer.concat([spkiPrefix, bytes]), format: "der", type: "spki" })
}

const rawPublicKey = (key: KeyObject): string =>
  `whpk_${createPublicKey(key).export({ format: "der", type: "spki" }).subarray(spkiPrefix.length).toString("base64")}`

/**
 * A `v1a` key from its `whsk_…` private key; the public key is derived from it.
 *
 * @category constructors
 */
export const secretV1a = (whsk: string): Secret => {
  const key = privateKeyObject(whsk)
  const seed = key.export({ format: "der", type: "pkcs8" }).subarray(pkcs8Prefix.length)
  return {
    version: "v1a",
    privateKey: Redacted.make(`whsk_${seed.toString("base64")}`),
    publicKey: rawPublicKey(key)
  }
}

/**
 * A `v1a` verification key from a `whpk_…` public key (checked at startup).
 *
 * @category constructors
 */
export const publicKeyV1a = (whpk: string): VerificationKey => {
  publicKeyObject(whpk)
  return { version: "v1a", publicKey: whpk.startsWith("whpk_") ? whpk : `whpk_${whpk}` }
}

/**
 * A fresh ed25519 key pair for `v1a`.
 *
 * @category constructors
 */
export const generateV1a = (): Secret => {
  const { privateKey } = generateKeyPairSync("ed25519")
  const seed = privateKey.export({ format: "der", type: "pkcs8" }).subarray(pkcs8Prefix.length)
  return {
    version: "v1a",
    privateKey: Redacted.make(`whsk_${seed.toString("base64")}`),
    publicKey: rawPublicKey(privateKey)
  }
}

// Parsed keys are cached by the key value, so signing many messages decodes each key once.
// A KeyObject, not the raw bytes: createHmac builds a key object from a Buffer on every call
// (about 17 us of the dispatcher's per-delivery cost; with a cached KeyObject about 3 us).
const hmacKeys = new WeakMap<object, KeyObject>()
const privateKeys = new WeakMap<object, KeyObject>()
const publicKeys = new Map<string, KeyObject>()

const hmacKey = (secret: { readonly key: Redacted.Redacted<string> }): KeyObject => {
  let key = hmacKeys.get(secret.key)
  if (key === undefined) {
    key = createSecretKey(v1KeyBytes(Redacted.value(secret.key)))
    hmacKeys.set(secret.key, key)
  }
  return key
}

const privateKeyOf = (secret: { readonly privateKey: Redacted.Redacted<string> }): KeyObject => {
  let key = privateKeys.get(secret.privateKey)
  if (key === undefined) {
    key = privateKeyObject(Redacted.value(secret.privateKey))
    privateKeys.set(secret.privateKey, key)
  }
  return key
}

const publicKeyOf = (whpk: string): KeyObject => {
  let key = publicKeys.get(whpk)
  if (key === undefined) {
    key = publicKeyObject(whpk)
    if (publicKeys.size > 1024) publicKeys.clear()
    publicKeys.set(whpk, key)
  }
  return key
}

// ---------------------------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------------------------

/**
 * What is signed: the message id (stable across retries), the attempt's time in unix seconds and the
 * exact body.
 *
 * @category models
 */
export interface Message {
  readonly id: string
  /** Unix seconds. */
  readonly timestamp: number
  readonly payload: string
}

/**
 * The three Standard Webhooks headers (a type alias, not an interface, so it passes as `HeadersInput`).
 *
 * @category models
 */
export type Headers = {
  readonly "webhook-id": string
  readonly "webhook-timestamp": string
  readonly "webhook-signature": string
}

const signedContent = (id: string, timestamp: string, payload: string | Uint8Array): Buffer =>
  Buffer.concat([Buffer.from(`${id}.${timestamp}.`, "utf8"), toBytes(payload)])

const toBytes = (payload: string | Uint8Array): Uint8Array =>
  typeof payload === "string" ? Buffer.from(payload, "utf8") : payload

/**
 * Signs a message with every key: the signature header holds one space-separated `v1,<base64>` or
 * `v1a,<base64>` entry per key, in the order given.
 *
 * @example
 * ```ts
 * const headers = Signature.sign({ id: "msg_1", timestamp: 1614265330, payload: body }, [secret])
 * ```
 * @category signing
 */
export const sign = (message: Message, secrets: ReadonlyArray<Secret>): Headers => {
  if (secrets.length === 0) throw new Error("Signature.sign needs at least one secret")
  const timestamp = String(Math.floor(message.timestamp))
  const content = signedContent(message.id, timestamp, message.payload)
  const entries = secrets.map((secret) =>
    secret.version === "v1"
      ? `v1,${createHmac("sha256", hmacKey(secret)).update(content).digest("base64")}`
      : `v1a,${cryptoSign(null, content, privateKeyOf(secret)).toString("base64")}`
  )
  return {
    "webhook-id": message.id,
    "webhook-timestamp": timestamp,
    "webhook-signature": entries.join(" ")
  }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/**
 * A signature header the scheme needs is absent. 400.
 *
 * @category errors
 */
export class MissingHeader extends HttpError.Class("MissingHeader", {
  status: 400,
  message: (e: { readonly header: string }) => `The ${e.header} header is missing`,
  body: (e: { readonly header: string }) => ({ header: e.header })
})<{ readonly header: string }> {}

/**
 * A signature header is present but cannot be read (a timestamp that is not a number, a signature
 * list with no entry we know). 400.
 *
 * @category errors
 */
export class MalformedHeader extends HttpError.Class("MalformedHeader", {
  status: 400,
  message: (e: { readonly header: string }) => `The ${e.header} header is malformed`,
  body: (e: { readonly header: string }) => ({ header: e.header })
})<{ readonly header: string; readonly reason: string }> {}

/**
 * No signature matched any key. 401; the body says no more than that.
 *
 * @category errors
 */
export class InvalidSignature extends HttpError.Class("InvalidSignature", {
  status: 401,
  message: "The webhook signature does not match"
})<{}> {}

/**
 * The signed timestamp is older than the tolerance allows (a stale or replayed delivery). 401.
 *
 * @category errors
 */
export class TimestampTooOld extends HttpError.Class("TimestampTooOld", {
  status: 401,
  message: "The webhook timestamp is too old"
})<{ readonly timestamp: number; readonly now: number }> {}

/**
 * The signed timestamp is further in the future than the tolerance allows. 401.
 *
 * @category errors
 */
export class TimestampTooNew extends HttpError.Class("TimestampTooNew", {
  status: 401,
  message: "The webhook timestamp is too far in the future"
})<{ readonly timestamp: number; readonly now: number }> {}

/**
 * Every way `verify` fails.
 *
 * @category errors
 */
export type VerifyError =
  MissingHeader | MalformedHeader | InvalidSignature | TimestampTooOld | TimestampTooNew

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

/**
 * Request headers as web `Headers`, Node's incoming headers or Effect's `Headers`; names are matched
 * case-insensitively.
 *
 * @category models
 */
export type HeadersInput =
  globalThis.Headers | Readonly<Record<string, string | ReadonlyArray<string> | undefined>>

/** @internal Reads a header case-insensitively; a repeated header is refused as malformed. */
export const header = (headers: HeadersInput, name: string): string | undefined | ReadonlyArray<string> => {
  if (headers instanceof globalThis.Headers) return headers.get(name) ?? undefined
  const record = headers as Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
  const direct = record[name]
  if (direct !== undefined) return direct
  for (const key of Object.keys(record)) {
    if (key.toLowerCase() === name) return record[key]
  }
  return undefined
}

/** @internal One header value, or the matching error. */
export const requireHeader = (
  headers: HeadersInput,
  name: string
): Effect.Effect<string, MissingHeader | MalformedHeader> => {
  const value = header(headers, name)
  if (value === undefined || value === "") return Effect.fail(new MissingHeader({ header: name }))
  if (typeof value !== "string")
    return Effect.fail(new MalformedHeader({ header: name, reason: "the header is repeated" }))
  return Effect.succeed(value)
}

/**
 * Options of `verify`.
 *
 * @category models
 */
export interface VerifyOptions {
  /** How far the timestamp may be from now, in either direction. Default 5 minutes. */
  readonly tolerance?: Duration.Input | undefined
  /** The time to check against; by default Effect's `Clock` (so `TestClock` drives it). */
  readonly now?: Date | undefined
}

/**
 * A message whose signature and timestamp checked out.
 *
 * @category models
 */
export interface Verified {
  readonly id: string
  /** Unix seconds. */
  readonly timestamp: number
}

/** @internal Default tolerance of every scheme: the reference libraries' ±300 s. */
export const defaultTolerance: Duration.Duration = Duration.minutes(5)

// More entries than this is not a rotation but an attempt to make us work.
const maxEntries = 16
const timestampPattern = /^[0-9]{1,15}$/

/** @internal Checks a unix-seconds timestamp against now ± tolerance. */
export const checkTimestamp = (
  timestamp: number,
  options: VerifyOptions | undefined
): Effect.Effect<void, TimestampTooOld | TimestampTooNew> =>
  Effect.flatMap(
    options?.now === undefined ? Clock.currentTimeMillis : Effect.succeed(options.now.getTime()),
    (nowMillis): Effect.Effect<void, TimestampTooOld | TimestampTooNew> => {
      const tolerance = Duration.toMillis(options?.tolerance ?? defaultTolerance)
      const at = timestamp * 1000
      const now = Math.floor(nowMillis / 1000)
      if (at < nowMillis - tolerance) return Effect.fail(new TimestampTooOld({ timestamp, now }))
      if (at > nowMillis + tolerance) return Effect.fail(new TimestampTooNew({ timestamp, now }))
      return Effect.void
    }
  )

/**
 * Verifies a Standard Webhooks delivery over the raw body: some entry of `webhook-signature` must be
 * a valid `v1` or `v1a` signature under some key, and `webhook-timestamp` within the tolerance of now
 * in both directions. Every key is tried against every entry, so the time taken does not say which
 * one matched. Replays inside the tolerance are the caller's to refuse (the Receiver middleware keeps
 * a replay cache by `webhook-id`).
 *
 * @example
 * ```ts
 * const verified = yield* Signature.verify(request.headers, rawBody, [secret], { tolerance: "5 minutes" })
 * ```
 * @category verification
 */
export const verify = (
  headers: HeadersInput,
  payload: string | Uint8Array,
  verificationKeys: ReadonlyArray<VerificationKey>,
  options?: VerifyOptions
): Effect.Effect<Verified, VerifyError> =>
  Effect.gen(function* () {
    const id = yield* requireHeader(headers, "webhook-id")
    const timestampText = yield* requireHeader(headers, "webhook-timestamp")
    const signatures = yield* requireHeader(headers, "webhook-signature")
    if (!timestampPattern.test(timestampText))
      return yield* new MalformedHeader({ header: "webhook-timestamp", reason: "not unix seconds" })
    const entries = signatures.split(" ").filter((entry) => entry !== "")
    if (entries.length === 0 || entries.length > maxEntries)
      return yield* new MalformedHeader({ header: "webhook-signature", reason: "no usable entry" })
    if (!matches(signedContent(id, timestampText, payload), entries, verificationKeys))
      return yield* new InvalidSignature()
    const timestamp = Number(timestampText)
    yield* checkTimestamp(timestamp, options)
    return { id, timestamp }
  })

const matches = (
  content: Buffer,
  entries: ReadonlyArray<string>,
  keys: ReadonlyArray<VerificationKey>
): boolean => {
  let ok = false
  const expectedV1 = keys.flatMap((key) =>
    key.version === "v1" ? [createHmac("sha256", hmacKey(key)).update(content).digest("base64")] : []
  )
  for (const entry of entries) {
    const comma = entry.indexOf(",")
    if (comma < 0) continue
    const version = entry.slice(0, comma)
    const signature = entry.slice(comma + 1)
    if (version === "v1") {
      for (const expected of expectedV1) if (Auth.constantTimeEqual(signature, expected)) ok = true
    } else if (version === "v1a") {
      if (!base64.test(signature)) continue
      const bytes = Buffer.from(signature, "base64")
      // ed25519 signatures are 64 bytes; a canonical base64 text is needed too, so a changed padding
      // character cannot pass as the same signature.
      if (bytes.length !== 64 || bytes.toString("base64") !== signature) continue
      for (const key of keys) {
        if (key.version === "v1a" && cryptoVerify(null, content, publicKeyOf(key.publicKey), bytes)) ok = true
      }
    }
  }
  return ok
}

// ---------------------------------------------------------------------------------------------
// Stripe and GitHub
// ---------------------------------------------------------------------------------------------

const hexPattern = /^[0-9a-f]{64}$/

/**
 * A Stripe `Stripe-Signature` header value, `t=<unix seconds>,v1=<hex>`: HMAC-SHA256 of
 * `${t}.${payload}` keyed with the whole endpoint secret (`whsec_…` as given, not base64-decoded,
 * unlike Standard Webhooks). For tests and fake senders.
 *
 * @category signing
 */
export const signStripe = (
  message: { readonly timestamp: number; readonly payload: string | Uint8Array },
  secret: Redacted.Redacted<string>
): string => {
  const t = String(Math.floor(message.timestamp))
  return `t=${t},v1=${stripeMac(secret, t, message.payload)}`
}

const stripeMac = (secret: Redacted.Redacted<string>, t: string, payload: string | Uint8Array): string =>
  createHmac("sha256", Redacted.value(secret)).update(`${t}.`).update(toBytes(payload)).digest("hex")

/**
 * Verifies a Stripe delivery: some `v1` entry of `Stripe-Signature` must match some secret, and `t`
 * must be within the tolerance of now in both directions (Stripe's own libraries accept any future
 * timestamp; we do not).
 *
 * @category verification
 */
export const verifyStripe = (
  headers: HeadersInput,
  payload: string | Uint8Array,
  secrets: ReadonlyArray<Redacted.Redacted<string>>,
  options?: VerifyOptions
): Effect.Effect<{ readonly timestamp: number }, VerifyError> =>
  Effect.gen(function* () {
    const value = yield* requireHeader(headers, "stripe-signature")
    let t: string | undefined
    const v1: Array<string> = []
    for (const item of value.split(",")) {
      const eq = item.indexOf("=")
      if (eq < 0) continue
      const key = item.slice(0, eq).trim()
      const val = item.slice(eq + 1).trim()
      if (key === "t") t = val
      else if (key === "v1") v1.push(val)
    }
    if (t === undefined || !timestampPattern.test(t))
      return yield* new MalformedHeader({ header: "stripe-signature", reason: "no timestamp" })
    if (v1.length === 0 || v1.length > maxEntries)
      return yield* new MalformedHeader({ header: "stripe-signature", reason: "no v1 signature" })
    let ok = false
    for (const secret of secrets) {
      const expected = stripeMac(secret, t, payload)
      for (const candidate of v1) if (Auth.constantTimeEqual(candidate, expected)) ok = true
    }
    if (!ok) return yield* new InvalidSignature()
    const timestamp = Number(t)
    yield* checkTimestamp(timestamp, options)
    return { timestamp }
  })

/**
 * A GitHub `X-Hub-Signature-256` header value, `sha256=<hex>` (HMAC-SHA256 of the body). For tests
 * and fake senders.
 *
 * @category signing
 */
export const signGithub = (payload: string | Uint8Array, secret: Redacted.Redacted<string>): string =>
  `sha256=${createHmac("sha256", Redacted.value(secret)).update(toBytes(payload)).digest("hex")}`

/**
 * Verifies a GitHub delivery's `X-Hub-Signature-256` against any of the secrets. GitHub signs no
 * timestamp, so there is no tolerance to check: only a replay cache (by `X-GitHub-Delivery`) stops a
 * captured delivery from being sent again.
 *
 * @category verification
 */
export const verifyGithub = (
  headers: HeadersInput,
  payload: string | Uint8Array,
  secrets: ReadonlyArray<Redacted.Redacted<string>>
): Effect.Effect<void, MissingHeader | MalformedHeader | InvalidSignature> =>
  Effect.gen(function* () {
    const value = yield* requireHeader(headers, "x-hub-signature-256")
    const hex = value.startsWith("sha256=") ? value.slice(7) : undefined
    if (hex === undefined || !hexPattern.test(hex))
      return yield* new MalformedHeader({ header: "x-hub-signature-256", reason: "not sha256=<hex>" })
    let ok = false
    for (const secret of secrets) {
      if (Auth.constantTimeEqual(hex, signGithub(payload, secret).slice(7))) ok = true
    }
    if (!ok) return yield* new InvalidSignature()
  })
