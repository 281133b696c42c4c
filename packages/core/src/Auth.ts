/**
 * Authentication middleware: HTTP Basic, Bearer tokens, API keys, JWTs (verified with `jose`) and the
 * user of a session. Each provides the app's own user service or fails with 401 and the scheme's
 * `WWW-Authenticate` challenge; combine several with `Middleware.oneOf`.
 *
 * @since 0.1.0
 */
import type * as Arr from "effect/Array"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as Jose from "jose"
import { createHash, createHmac, createSecretKey, timingSafeEqual } from "node:crypto"
import * as HttpError from "./HttpError.ts"
import * as Middleware from "./Middleware.ts"
import type * as Session from "./Session.ts"
import * as Signing from "./internal/signing.ts"

type IdentifierOf<K> = K extends Context.Key<infer I, any> ? I : never

/**
 * An authentication middleware: provides `Id` (the app's user service) to what runs inside, needs
 * `R` (what `verify` or `load` needs), and fails with `Unauthorized` or with the errors of `verify`.
 *
 * @category models
 */
export type Authenticator<Id, E, R> = Middleware.Middleware<
  Id,
  Exclude<R, HttpRouter.Provided>,
  E | HttpError.Unauthorized
>

/**
 * What an authentication middleware returns once the compiler checked that its `raises` and
 * `requires` lists name every error tag `verify` (or `load`) can fail with and every request-scoped
 * service it reads; otherwise a message.
 *
 * @category models
 */
export type Checked<Id, E, R, Raises, Requires> = [Exclude<Middleware.TagOf<E>, Raises>] extends [never]
  ? [Exclude<Extract<R, Middleware.RequestScoped>, Requires>] extends [never]
    ? Authenticator<Id, E, R>
    : {
        readonly "strata: middleware": `requires must list ${Middleware.KeyOf<Exclude<Extract<R, Middleware.RequestScoped>, Requires>>}, which it reads`
      }
  : {
      readonly "strata: middleware": `raises must list ${Exclude<Middleware.TagOf<E>, Raises>}, which it can fail with`
    }

/**
 * Options every authentication middleware takes.
 *
 * @category models
 */
export interface BaseOptions<
  Id,
  User,
  Raises extends string,
  Requires extends ReadonlyArray<Context.Key<any, any>>
> {
  /** The app's user service (a `Middleware.Service`); the user `verify` returns is provided as it. */
  readonly provides: Context.Key<Id, User>
  /** Tags of the errors `verify` can fail with, for the manifest; the compiler checks the list is complete. */
  readonly raises?: ReadonlyArray<Raises> | undefined
  /** Request-scoped services `verify` reads, for the manifest; the compiler checks the list is complete. */
  readonly requires?: Requires | undefined
}

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

const keyName = (key: Context.Key<any, any>): string => (key as { readonly key?: string }).key ?? String(key)

const authenticator = (
  name: string,
  provides: Context.Key<any, any>,
  raises: ReadonlyArray<string>,
  requires: ReadonlyArray<Context.Key<any, any>>,
  authenticate: Effect.Effect<unknown, unknown, unknown>
): any =>
  Middleware.fromEntries([
    {
      info: {
        name,
        provides: [keyName(provides)],
        requires: [...new Set(requires.map(keyName))],
        raises: [...new Set(raises)],
        handles: []
      },
      build: Effect.succeed((next) =>
        Effect.flatMap(authenticate, (user) => Effect.provideService(next, provides, user))
      )
    }
  ])

// A realm goes into a response header: printable ASCII only, so it can neither break the header
// nor fail to encode.
const printable = (what: string, value: string): string => {
  if (!/^[\x20-\x7e]*$/.test(value)) throw new Error(`${what} must be printable ASCII`)
  return value
}

const quote = (what: string, value: string): string => `"${printable(what, value).replace(/[\\"]/g, "\\$&")}"`

const tokenChars = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** The credentials of an `Authorization` header for `scheme` (case-insensitive), or undefined. */
const credentialsFor = (header: string | undefined, scheme: string): string | undefined => {
  if (header === undefined) return undefined
  const value = header.trim()
  const space = value.search(/[ \t]/)
  const given = space === -1 ? value : value.slice(0, space)
  if (given.toLowerCase() !== scheme) return undefined
  return space === -1 ? "" : value.slice(space + 1).trim()
}

const unauthorized = (challenge: string, reason: string) =>
  Effect.fail(new HttpError.Unauthorized({ challenge, reason }))

const sha256 = (value: string): Buffer => createHash("sha256").update(value, "utf8").digest()

/**
 * Compares two secrets in time that does not depend on where they differ or on their lengths: both
 * are hashed with SHA-256 and the digests compared with `timingSafeEqual`. Use it in `verify` to
 * check a password or token against a stored one.
 *
 * @example
 * ```ts
 * Auth.basic({
 *   provides: CurrentUser,
 *   realm: "admin",
 *   verify: (username, password) =>
 *     Effect.succeed(
 *       Auth.constantTimeEqual(username, "admin") && Auth.constantTimeEqual(password, adminPassword) ? admin : undefined
 *     )
 * })
 * ```
 * @category utils
 */
export const constantTimeEqual = (
  a: string | Uint8Array | Redacted.Redacted<string>,
  b: string | Uint8Array | Redacted.Redacted<string>
): boolean =>
  Signing.constantTimeEqual(
    Redacted.isRedacted(a) ? Redacted.value(a) : a,
    Redacted.isRedacted(b) ? Redacted.value(b) : b
  )

// ---------------------------------------------------------------------------------------------
// Basic
// ---------------------------------------------------------------------------------------------

const utf8 = new TextDecoder("utf-8", { fatal: true })
const hasControlChars = (text: string): boolean => {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x20 || code === 0x7f) return true
  }
  return false
}

/** `user-id:password` from the base64 of a Basic header; undefined when malformed. */
const decodeBasic = (value: string): { readonly username: string; readonly password: string } | undefined => {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value)) return undefined
  const bytes = Buffer.from(value, "base64")
  // Node's decoder skips what it does not understand; only canonical base64 is accepted.
  if (bytes.toString("base64").replace(/=+$/, "") !== value.replace(/=+$/, "")) return undefined
  let text: string
  try {
    text = utf8.decode(bytes)
  } catch {
    return undefined
  }
  const colon = text.indexOf(":")
  // RFC 7617: no control characters in either part.
  if (colon === -1 || hasControlChars(text)) return undefined
  // RFC 7617 with charset UTF-8 asks for Unicode normalization (NFC) of both parts.
  return { username: text.slice(0, colon).normalize("NFC"), password: text.slice(colon + 1).normalize("NFC") }
}

/**
 * HTTP Basic authentication (RFC 7617): reads `Authorization: Basic …` and asks `verify` for the
 * user. Missing, malformed (bad base64, no colon, invalid UTF-8) or rejected credentials get 401
 * with `WWW-Authenticate: Basic realm="…", charset="UTF-8"`. Comparing the password is `verify`'s
 * job: do it in constant time (`Auth.constantTimeEqual`, or a password hash's own verify).
 *
 * @example
 * ```ts
 * const auth = Auth.basic({
 *   provides: CurrentUser,
 *   realm: "admin area",
 *   verify: (username, password) => users.checkPassword(username, password)
 * })
 * ```
 * @category middleware
 */
export const basic = <
  Id,
  User,
  E = never,
  R = never,
  const Raises extends string = never,
  const Requires extends ReadonlyArray<Context.Key<any, any>> = readonly []
>(
  options: BaseOptions<Id, User, Raises, Requires> & {
    /** Shown by browsers in the login dialog. */
    readonly realm: string
    readonly verify: (
      username: string,
      password: Redacted.Redacted<string>
    ) => Effect.Effect<NoInfer<User> | undefined, E, R>
  }
): Checked<Id, E, R, Raises, IdentifierOf<Requires[number]>> => {
  const challenge = `Basic realm=${quote("realm", options.realm)}, charset="UTF-8"`
  return authenticator(
    "auth:basic",
    options.provides,
    ["Unauthorized", ...(options.raises ?? [])],
    options.requires ?? [],
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const credentials = credentialsFor(request.headers["authorization"], "basic")
      if (credentials === undefined) return yield* unauthorized(challenge, "no basic credentials")
      const decoded = decodeBasic(credentials)
      if (decoded === undefined) return yield* unauthorized(challenge, "malformed basic credentials")
      const user = yield* options.verify(decoded.username, Redacted.make(decoded.password))
      if (user === undefined) return yield* unauthorized(challenge, "basic credentials rejected")
      return user
    })
  )
}

// ---------------------------------------------------------------------------------------------
// Bearer
// ---------------------------------------------------------------------------------------------

// RFC 6750 b64token.
const b64token = /^[A-Za-z0-9\-._~+/]+=*$/

interface BearerChallenges {
  /** No bearer token: no error code (RFC 6750 §3.1). */
  readonly missing: string
  /** A token was given but is malformed, expired, revoked or otherwise rejected. */
  readonly invalid: string
}

const bearerChallenges = (realm: string): BearerChallenges => {
  const base = `Bearer realm=${quote("realm", realm)}`
  return { missing: base, invalid: `${base}, error="invalid_token"` }
}

/** The bearer token of the request, or an `Unauthorized` with the right challenge. */
const bearerToken = (challenges: BearerChallenges) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const token = credentialsFor(request.headers["authorization"], "bearer")
    if (token === undefined) return unauthorized(challenges.missing, "no bearer token")
    if (!b64token.test(token)) return unauthorized(challenges.invalid, "malformed bearer token")
    return Effect.succeed(token)
  })

/**
 * Bearer token authentication (RFC 6750): reads `Authorization: Bearer …` and asks `verify` for the
 * user (an opaque token looked up in a store, an introspection call, …). No token gets 401 with
 * `WWW-Authenticate: Bearer realm="…"`; a malformed or rejected token adds `error="invalid_token"`.
 * Tokens in the query string or the body are not read: they end up in logs and caches.
 *
 * @example
 * ```ts
 * const auth = Auth.bearer({ provides: CurrentUser, realm: "api", verify: (token) => tokens.find(token) })
 * ```
 * @category middleware
 */
export const bearer = <
  Id,
  User,
  E = never,
  R = never,
  const Raises extends string = never,
  const Requires extends ReadonlyArray<Context.Key<any, any>> = readonly []
>(
  options: BaseOptions<Id, User, Raises, Requires> & {
    readonly realm: string
    readonly verify: (token: Redacted.Redacted<string>) => Effect.Effect<NoInfer<User> | undefined, E, R>
  }
): Checked<Id, E, R, Raises, IdentifierOf<Requires[number]>> => {
  const challenges = bearerChallenges(options.realm)
  return authenticator(
    "auth:bearer",
    options.provides,
    ["Unauthorized", ...(options.raises ?? [])],
    options.requires ?? [],
    Effect.gen(function* () {
      const token = yield* bearerToken(challenges)
      const user = yield* options.verify(Redacted.make(token))
      if (user === undefined) return yield* unauthorized(challenges.invalid, "bearer token rejected")
      return user
    })
  )
}

// ---------------------------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------------------------

/**
 * Where a client sends its API key.
 *
 * @category models
 */
export type ApiKeyIn = "header" | "query" | "cookie"

/**
 * API key authentication: reads the key from a header, a query parameter or a cookie and asks
 * `verify` for the user (`Auth.apiKeyTable` for a fixed set of keys). A missing, repeated or
 * rejected key gets 401 with `WWW-Authenticate: ApiKey realm="…", in="…", name="…"` (API keys have
 * no registered scheme; `challenge` replaces it). Prefer a header: query strings end up in logs of
 * proxies and browsers (Strata's own logger logs only the path).
 *
 * @example
 * ```ts
 * const auth = Auth.apiKey({
 *   provides: CurrentUser,
 *   in: "header",
 *   name: "x-api-key",
 *   verify: Auth.apiKeyTable({ [Redacted.value(ciKey)]: ciUser })
 * })
 * ```
 * @category middleware
 */
export const apiKey = <
  Id,
  User,
  E = never,
  R = never,
  const Raises extends string = never,
  const Requires extends ReadonlyArray<Context.Key<any, any>> = readonly []
>(
  options: BaseOptions<Id, User, Raises, Requires> & {
    readonly in: ApiKeyIn
    /** The header, query parameter or cookie name. */
    readonly name: string
    readonly verify: (key: Redacted.Redacted<string>) => Effect.Effect<NoInfer<User> | undefined, E, R>
    /** Default `"api"`. */
    readonly realm?: string | undefined
    /** The whole `WWW-Authenticate` value, to replace the default. */
    readonly challenge?: string | undefined
  }
): Checked<Id, E, R, Raises, IdentifierOf<Requires[number]>> => {
  const where = options.in
  const name = where === "header" ? options.name.toLowerCase() : options.name
  if (where === "header" && !tokenChars.test(name)) throw new Error("apiKey: not a valid header name")
  const challenge =
    options.challenge === undefined
      ? `ApiKey realm=${quote("realm", options.realm ?? "api")}, in="${where}", name=${quote("name", options.name)}`
      : printable("challenge", options.challenge)
  const read = (request: HttpServerRequest.HttpServerRequest): ReadonlyArray<string> => {
    switch (where) {
      case "header": {
        const value = request.headers[name]
        return value === undefined ? [] : [value]
      }
      case "query":
        return new URL(request.url, "http://localhost").searchParams.getAll(name)
      case "cookie": {
        const value = request.cookies[name]
        return value === undefined ? [] : [value]
      }
    }
  }
  return authenticator(
    `auth:apiKey(${where} ${name})`,
    options.provides,
    ["Unauthorized", ...(options.raises ?? [])],
    options.requires ?? [],
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const values = read(request).filter((v) => v !== "")
      if (values.length === 0) return yield* unauthorized(challenge, "no api key")
      // Two keys: which one counts is a guess an attacker could play on; refuse both.
      if (values.length > 1) return yield* unauthorized(challenge, "more than one api key")
      const user = yield* options.verify(Redacted.make(values[0]!))
      if (user === undefined) return yield* unauthorized(challenge, "api key rejected")
      return user
    })
  )
}

/**
 * A `verify` for `Auth.apiKey` over a fixed table of keys. The presented key is compared with every
 * stored key (SHA-256 of both, `timingSafeEqual`, no early exit), so a right key and a wrong one take
 * the same path and the same time, and the time does not tell which entry matched.
 *
 * @example
 * ```ts
 * const verify = Auth.apiKeyTable({ [Redacted.value(yield* Config.Redacted("CI_KEY"))]: { id: "ci", role: "deploy" } })
 * ```
 * @category constructors
 */
export const apiKeyTable = <User>(
  keys: Readonly<Record<string, User>>
): ((key: Redacted.Redacted<string>) => Effect.Effect<User | undefined>) => {
  const table = Object.entries(keys).map(([key, user]) => ({ digest: sha256(key), user }))
  return (key) =>
    Effect.sync(() => {
      const presented = sha256(Redacted.value(key))
      let found: User | undefined
      for (const entry of table) {
        const equal = timingSafeEqual(presented, entry.digest)
        found = equal ? entry.user : found
      }
      return found
    })
}

// ---------------------------------------------------------------------------------------------
// JWT
// ---------------------------------------------------------------------------------------------

/**
 * JWS algorithms for a shared secret.
 *
 * @category models
 */
export type HmacAlgorithm = "HS256" | "HS384" | "HS512"

const asymmetric = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519"
] as const

/**
 * JWS algorithms for public keys (from a JWKS).
 *
 * @category models
 */
export type AsymmetricAlgorithm = (typeof asymmetric)[number]

const hmacKeyBytes: Record<HmacAlgorithm, number> = { HS256: 32, HS384: 48, HS512: 64 }

/**
 * A JSON Web Key Set: fetched from `url` (cached, refetched for an unknown `kid` at most once per
 * `cooldown`) or given as `keys`.
 *
 * @category models
 */
export type Jwks =
  | {
      readonly url: string | URL
      /** How long one fetch may take; default 5 seconds. */
      readonly timeout?: Duration.Input | undefined
      /** How long a fetched set is used before it is fetched again; default 10 minutes. */
      readonly cacheMaxAge?: Duration.Input | undefined
      /** The least time between two fetches; default 30 seconds. */
      readonly cooldown?: Duration.Input | undefined
      readonly keys?: never
    }
  | { readonly keys: ReadonlyArray<Jose.JWK>; readonly url?: never }

/**
 * Where the verification key comes from, and the algorithms it may be used with. Secrets only go
 * with HMAC algorithms and key sets only with public-key ones, so a public key can never be
 * mistaken for an HMAC secret (algorithm confusion).
 *
 * @category models
 */
export type JwtKey =
  | {
      /** The shared HMAC secret, at least as long as the hash (32 bytes for HS256). */
      readonly secret: Redacted.Redacted<string>
      /** The algorithms accepted; a token signed with any other is rejected. */
      readonly algorithms: Arr.NonEmptyReadonlyArray<HmacAlgorithm>
      readonly jwks?: never
    }
  | {
      readonly jwks: Jwks
      /** The algorithms accepted; a token signed with any other is rejected. */
      readonly algorithms: Arr.NonEmptyReadonlyArray<AsymmetricAlgorithm>
      readonly secret?: never
    }

/**
 * Options of `Auth.jwt`.
 *
 * @category models
 */
export type JwtOptions<Id, User, RD> = JwtKey & {
  readonly provides: Context.Key<Id, User>
  /** Decodes the verified claims into the user; claims that do not decode are an invalid token. */
  readonly decode: Schema.Decoder<NoInfer<User>, RD>
  /** Accepted `iss` values; when given, the claim is required. */
  readonly issuer?: string | ReadonlyArray<string> | undefined
  /** Accepted `aud` values; when given, the claim is required. */
  readonly audience?: string | ReadonlyArray<string> | undefined
  /** Leeway for `exp`, `nbf` and `iat` against the Effect `Clock`; default 5 seconds. */
  readonly clockTolerance?: Duration.Input | undefined
  /** Claims a token must carry; default `["exp"]`, so a token that never expires is refused. */
  readonly requiredClaims?: ReadonlyArray<string> | undefined
  /** The expected `typ` header (`"at+jwt"` for OAuth access tokens, RFC 9068); not checked by default. */
  readonly typ?: string | undefined
  /** Default `"api"`. */
  readonly realm?: string | undefined
}

// The key set could not be fetched: the server's trouble, not the token's.
class KeySetUnavailable {
  readonly cause: unknown
  constructor(cause: unknown) {
    this.cause = cause
  }
}

// Errors of a key set lookup that the token caused (an unknown `kid`, an unsupported `alg`).
const tokenCaused = new Set([
  "ERR_JWKS_NO_MATCHING_KEY",
  "ERR_JWKS_MULTIPLE_MATCHING_KEYS",
  "ERR_JOSE_NOT_SUPPORTED"
])

const codeOf = (error: unknown): string | undefined =>
  error instanceof Jose.errors.JOSEError ? error.code : undefined

const reasonOf = (error: unknown): string => {
  if (error instanceof Jose.errors.JWTExpired) return "token expired"
  if (error instanceof Jose.errors.JWTClaimValidationFailed) return `claim ${error.claim}: ${error.reason}`
  switch (codeOf(error)) {
    case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
      return "bad signature"
    case "ERR_JOSE_ALG_NOT_ALLOWED":
      return "algorithm not allowed"
    case "ERR_JWS_INVALID":
    case "ERR_JWT_INVALID":
      return "malformed token"
    case "ERR_JWKS_NO_MATCHING_KEY":
      return "no matching key"
    default:
      return "token rejected"
  }
}

const seconds = (input: Duration.Input): number => Duration.toSeconds(Duration.fromInputUnsafe(input))
const millis = (input: Duration.Input): number =>
  Math.round(Duration.toMillis(Duration.fromInputUnsafe(input)))

const hmacHashes: Record<HmacAlgorithm, string> = { HS256: "sha256", HS384: "sha384", HS512: "sha512" }
const base64url = /^[A-Za-z0-9_-]*$/
const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

type ClaimOptions = Jose.JWTClaimVerificationOptions & { readonly currentDate: Date }

/**
 * Verifies an HMAC-signed JWT synchronously with node:crypto. jose verifies HMACs through WebCrypto,
 * a thread-pool job that cost more CPU than the rest of an authenticated request. The header is
 * parsed strictly, `alg` must be in the allowlist, the signature is compared in constant time in
 * its canonical base64url form, and then jose's own code checks the header (`crit`, `b64`, `typ`)
 * and the claims, on the same header with `alg: none` (`UnsecuredJWT.decode`), so the claim rules
 * and errors are jose's. Errors are jose's error classes, so `reasonOf` reads them alike.
 */
const hmacVerifier = (bytes: Uint8Array, algorithms: ReadonlyArray<string>) => {
  const key = createSecretKey(bytes)
  const allowed = new Set(algorithms)
  return (token: string, claims: ClaimOptions): Jose.JWTPayload => {
    const parts = token.split(".")
    if (parts.length !== 3 || !parts.every((part) => base64url.test(part))) {
      throw new Jose.errors.JWSInvalid("Invalid Compact JWS")
    }
    const [encodedHeader, encodedPayload, signature] = parts as [string, string, string]
    let header: unknown
    try {
      header = JSON.parse(strictUtf8.decode(Buffer.from(encodedHeader, "base64url")))
    } catch {
      throw new Jose.errors.JWSInvalid("JWS Protected Header is invalid")
    }
    if (typeof header !== "object" || header === null || Array.isArray(header)) {
      throw new Jose.errors.JWSInvalid("JWS Protected Header is invalid")
    }
    const alg = (header as { readonly alg?: unknown }).alg
    if (typeof alg !== "string" || alg === "") {
      throw new Jose.errors.JWSInvalid('JWS "alg" (Algorithm) Header Parameter missing or invalid')
    }
    if (!allowed.has(alg) || !Object.hasOwn(hmacHashes, alg)) {
      throw new Jose.errors.JOSEAlgNotAllowed('"alg" (Algorithm) Header Parameter value not allowed')
    }
    const expected = createHmac(hmacHashes[alg as HmacAlgorithm], key)
      .update(`${encodedHeader}.${encodedPayload}`)
      .digest("base64url")
    if (!Signing.sameMac(signature, expected)) throw new Jose.errors.JWSSignatureVerificationFailed()
    const unsecured = `${Buffer.from(JSON.stringify({ ...header, alg: "none" })).toString("base64url")}.${encodedPayload}.`
    return Jose.UnsecuredJWT.decode(unsecured, claims).payload
  }
}

type Verifier = (token: string, claims: ClaimOptions) => Jose.JWTPayload | Promise<Jose.JWTPayload>

const verifierOf = (options: JwtKey): Verifier => {
  for (const algorithm of options.algorithms) {
    const allowed =
      options.secret !== undefined
        ? Object.hasOwn(hmacKeyBytes, algorithm)
        : (asymmetric as ReadonlyArray<string>).includes(algorithm)
    if (!allowed) throw new Error(`jwt: algorithm ${String(algorithm)} cannot be used with this key`)
  }
  if (options.secret !== undefined) {
    const bytes = new TextEncoder().encode(Redacted.value(options.secret))
    const needed = Math.max(...options.algorithms.map((a) => hmacKeyBytes[a as HmacAlgorithm]))
    // RFC 7518 §3.2: the key must be at least as long as the hash output.
    if (bytes.length < needed) throw new Error(`jwt: the secret must be at least ${needed} bytes long`)
    return hmacVerifier(bytes, options.algorithms)
  }
  const key = keySetOf(options.jwks)
  const algorithms = [...options.algorithms]
  return (token, claims) =>
    Jose.jwtVerify(token, key, { ...claims, algorithms }).then((verified) => verified.payload)
}

const keySetOf = (jwks: Jwks): Jose.JWTVerifyGetKey => {
  if (jwks.keys !== undefined) return Jose.createLocalJWKSet({ keys: [...jwks.keys] })
  const remote = Jose.createRemoteJWKSet(new URL(jwks.url), {
    ...(jwks.timeout === undefined ? {} : { timeoutDuration: millis(jwks.timeout) }),
    ...(jwks.cacheMaxAge === undefined ? {} : { cacheMaxAge: millis(jwks.cacheMaxAge) }),
    ...(jwks.cooldown === undefined ? {} : { cooldownDuration: millis(jwks.cooldown) })
  })
  return async (header, token) => {
    try {
      return await remote(header, token)
    } catch (error) {
      const code = codeOf(error)
      throw code !== undefined && tokenCaused.has(code) ? error : new KeySetUnavailable(error)
    }
  }
}

const listOf = (value: string | ReadonlyArray<string> | undefined): Array<string> | undefined =>
  value === undefined ? undefined : typeof value === "string" ? [value] : [...value]

/**
 * JWT bearer authentication: verifies `Authorization: Bearer <jwt>` with `jose` against a secret or a
 * JSON Web Key Set, checks `exp`/`nbf` (against the Effect `Clock`, with `clockTolerance`), `iss`
 * and `aud`, and decodes the claims into the user with `decode`. `algorithms` is a required
 * allowlist: `alg: none` and every algorithm not in it are refused. Every rejection is a 401 with
 * `WWW-Authenticate: Bearer realm="…", error="invalid_token"` and a body that says nothing of why;
 * `reason` on the error says it for logs. A key set that cannot be fetched is a 503.
 *
 * @example
 * ```ts
 * const auth = Auth.jwt({
 *   provides: CurrentUser,
 *   jwks: { url: "https://issuer.example/.well-known/jwks.json" },
 *   algorithms: ["RS256"],
 *   issuer: "https://issuer.example",
 *   audience: "api",
 *   decode: Schema.Struct({ sub: Schema.String, name: Schema.String }).pipe(
 *     Schema.decodeTo(User, SchemaTransformation.transform({ decode: (c) => ({ id: c.sub, name: c.name }), encode: (u) => ({ sub: u.id, name: u.name }) }))
 *   )
 * })
 * ```
 * @category middleware
 */
export const jwt = <Id, User, RD = never>(
  options: JwtOptions<Id, User, RD>
): Middleware.Middleware<
  Id,
  Exclude<RD, HttpRouter.Provided>,
  HttpError.Unauthorized | HttpError.ServiceUnavailable
> => {
  if ((options.algorithms as ReadonlyArray<string>).length === 0)
    throw new Error("jwt: algorithms must not be empty")
  const verifier = verifierOf(options)
  const challenges = bearerChallenges(options.realm ?? "api")
  const tolerance = seconds(options.clockTolerance ?? "5 seconds")
  const decode = Schema.decodeUnknownEffect(options.decode)
  const issuer = listOf(options.issuer)
  const audience = listOf(options.audience)
  const claimOptions = {
    clockTolerance: tolerance,
    requiredClaims: [...(options.requiredClaims ?? ["exp"])],
    ...(issuer === undefined ? {} : { issuer }),
    ...(audience === undefined ? {} : { audience }),
    ...(options.typ === undefined ? {} : { typ: options.typ })
  }
  const verify = (token: string, now: number): Effect.Effect<Jose.JWTPayload, unknown> =>
    Effect.suspend(() => {
      try {
        const payload = verifier(token, { ...claimOptions, currentDate: new Date(now) })
        return payload instanceof Promise
          ? Effect.tryPromise({ try: () => payload, catch: (error) => error })
          : Effect.succeed(payload)
      } catch (error) {
        return Effect.fail(error)
      }
    })
  const rejected = (
    error: unknown
  ): Effect.Effect<never, HttpError.Unauthorized | HttpError.ServiceUnavailable> => {
    if (!(error instanceof KeySetUnavailable)) {
      return Effect.fail(
        new HttpError.Unauthorized({ challenge: challenges.invalid, reason: reasonOf(error) })
      )
    }
    // Logged for operators: the fetch error names the key set's address, never the token.
    return Effect.andThen(
      Effect.logWarning("JSON Web Key Set unavailable", error.cause),
      Effect.fail(new HttpError.ServiceUnavailable({ reason: "JSON Web Key Set unavailable" }))
    )
  }
  return authenticator(
    "auth:jwt",
    options.provides,
    options.jwks?.url === undefined ? ["Unauthorized"] : ["Unauthorized", "ServiceUnavailable"],
    [],
    Effect.gen(function* () {
      const token = yield* bearerToken(challenges)
      const now = yield* Clock.currentTimeMillis
      const payload = yield* verify(token, now).pipe(Effect.catch(rejected))
      return yield* Effect.mapError(
        decode(payload),
        () => new HttpError.Unauthorized({ challenge: challenges.invalid, reason: "claims do not decode" })
      )
    })
  )
}

// ---------------------------------------------------------------------------------------------
// Session user
// ---------------------------------------------------------------------------------------------

/**
 * The user of a session: reads the user id the app stored under `key` (at login) and loads the user
 * with `load`. Requires the session service, so it must run inside `Session.middleware`; written
 * the other way round, it does not compile. No id, or an id `load` does not find, gets 401 with
 * `WWW-Authenticate: Cookie realm="…"` (draft-broyer-http-cookie-auth; `challenge` replaces it).
 *
 * @example
 * ```ts
 * const auth = Auth.sessionUser({ provides: CurrentUser, session: AppSession, key: "userId", load: (id) => users.find(id) })
 * Router.use(Session.middleware(AppSession, { cookie: { keys } }), auth)
 * ```
 * @category middleware
 */
export const sessionUser = <
  Id,
  User,
  SessionId,
  SessionKey extends string,
  A,
  const K extends keyof A,
  E = never,
  R = never,
  const Raises extends string = never,
  const Requires extends ReadonlyArray<Context.Key<any, any>> = readonly []
>(
  options: BaseOptions<Id, User, Raises, Requires> & {
    /** The app's session service (`Session.Service`). */
    readonly session: Session.ServiceClass<SessionId, SessionKey, A>
    /** The key of the session data holding the user id. */
    readonly key: K
    readonly load: (id: NonNullable<A[K]>) => Effect.Effect<NoInfer<User> | undefined, E, R>
    /** Default `"app"`. */
    readonly realm?: string | undefined
    /** The whole `WWW-Authenticate` value, to replace the default. */
    readonly challenge?: string | undefined
  }
): Checked<Id, E, R | SessionId, Raises, SessionId | IdentifierOf<Requires[number]>> => {
  const challenge =
    options.challenge === undefined
      ? `Cookie realm=${quote("realm", options.realm ?? "app")}`
      : printable("challenge", options.challenge)
  return authenticator(
    "auth:session",
    options.provides,
    ["Unauthorized", ...(options.raises ?? [])],
    [options.session, ...(options.requires ?? [])],
    Effect.gen(function* () {
      const session = yield* options.session
      const id = yield* session.get(options.key)
      if (id === undefined || id === null) return yield* unauthorized(challenge, "no user in the session")
      const user = yield* options.load(id as NonNullable<A[K]>)
      if (user === undefined) return yield* unauthorized(challenge, "session user not found")
      return user
    })
  )
}
