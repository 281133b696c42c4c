import { afterAll, describe, expect, it } from "@effect/vitest"
import { vi } from "vitest"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as SchemaTransformation from "effect/SchemaTransformation"
import * as TestClock from "effect/testing/TestClock"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerRespondable from "effect/http/HttpServerRespondable"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Jose from "jose"
import * as fc from "fast-check"
import * as crypto from "node:crypto"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import * as Auth from "../src/Auth.ts"
import { App, HttpError, Middleware, Route, Router, Session } from "../src/index.ts"
import { CurrentUser, type User, users, Users, UsersLive } from "./fixtures.ts"

// The real node:crypto, with its hashing and comparing functions counted: the api-key table must
// take the same path for right and wrong keys.
vi.mock("node:crypto", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:crypto")>()
  return {
    ...actual,
    createHash: vi.fn(actual.createHash),
    timingSafeEqual: vi.fn(actual.timingSafeEqual)
  }
})

const ada = users[0]!
const bob = users[1]!

const unauthorizedBody = JSON.stringify({ error: "Unauthorized", message: "Unauthorized" })

interface Outcome {
  readonly status: number
  readonly challenge: string | null
  readonly body: string
  readonly user: User | undefined
  readonly error: unknown
}

/** Runs one middleware alone (with the ambient TestClock) and reports the response as a client sees it. */
const attempt = (
  middleware: Middleware.Middleware<CurrentUser, never, unknown, never, unknown, never>,
  request: Request
): Effect.Effect<Outcome> =>
  Effect.gen(function* () {
    const exit = yield* Effect.exit(
      Middleware.test(middleware, {
        request,
        inner: Effect.map(CurrentUser, (user) => HttpServerResponse.jsonUnsafe(user))
      })
    )
    if (Exit.isSuccess(exit)) {
      const { response, provided } = exit.value
      return {
        status: response.status,
        challenge: response.headers.get("www-authenticate"),
        body: yield* Effect.promise(() => response.text()),
        user: provided === undefined ? undefined : Context.get(provided, CurrentUser),
        error: undefined
      }
    }
    const error = Cause.findErrorOption(exit.cause)
    if (Option.isNone(error) || !HttpServerRespondable.isRespondable(error.value)) {
      return yield* Effect.die(Cause.squash(exit.cause))
    }
    const response = HttpServerResponse.toWeb(yield* HttpServerRespondable.toResponse(error.value))
    return {
      status: response.status,
      challenge: response.headers.get("www-authenticate"),
      body: yield* Effect.promise(() => response.text()),
      user: undefined,
      error: error.value
    }
  })

const reasonOf = (outcome: Outcome): string | undefined => (outcome.error as { reason?: string })?.reason

/** The credential appears nowhere a client, a log line or a thrown message could show it. */
const expectNoLeak = (outcome: Outcome, credential: string) => {
  const error = outcome.error as { message?: string } | undefined
  for (const shown of [
    outcome.body,
    outcome.challenge ?? "",
    JSON.stringify(error),
    String(error),
    error?.message
  ]) {
    expect(shown ?? "").not.toContain(credential)
  }
}

const get = (headers: Record<string, string> = {}, url = "http://x/me") => new Request(url, { headers })

const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64")

const counted = () => {
  const hash = vi.mocked(crypto.createHash)
  const compare = vi.mocked(crypto.timingSafeEqual)
  hash.mockClear()
  compare.mockClear()
  return () => ({ hashes: hash.mock.calls.length, compares: compare.mock.calls.length })
}

describe("Auth.basic", () => {
  const accounts: Record<string, { readonly password: string; readonly user: User }> = {
    ada: { password: "correct horse:battery", user: ada },
    josé: { password: "pässwörd", user: bob }
  }
  const seen: Array<{ readonly username: string; readonly shown: string }> = []
  // The comparison is the app's verify; this one runs the same comparison whether the user exists,
  // the password is wrong or right.
  const basic = Auth.basic({
    provides: CurrentUser,
    realm: "admin area",
    verify: (username, password) =>
      Effect.sync(() => {
        seen.push({ username, shown: `${String(password)} ${JSON.stringify({ password })}` })
        const account = accounts[username]
        const ok = Auth.constantTimeEqual(password, account?.password ?? "(no such user)")
        return ok && account !== undefined ? account.user : undefined
      })
  })
  const challenge = 'Basic realm="admin area", charset="UTF-8"'

  it.effect("accepts good credentials (a password may hold colons) and provides the user", () =>
    Effect.gen(function* () {
      const ok = yield* attempt(basic, get({ authorization: `Basic ${b64("ada:correct horse:battery")}` }))
      expect([ok.status, ok.user]).toEqual([200, ada])
      const lower = yield* attempt(
        basic,
        get({ authorization: `basic   ${b64("ada:correct horse:battery")}` })
      )
      expect(lower.user).toEqual(ada)
    })
  )

  it.effect("decodes UTF-8 and normalizes to NFC (RFC 7617 charset)", () =>
    Effect.gen(function* () {
      const composed = yield* attempt(basic, get({ authorization: `Basic ${b64("josé:pässwörd")}` }))
      expect(composed.user).toEqual(bob)
      const decomposed = yield* attempt(
        basic,
        get({ authorization: `Basic ${b64("josé:pässwörd".normalize("NFD"))}` })
      )
      expect(decomposed.user).toEqual(bob)
    })
  )

  it.effect("answers 401 with the Basic challenge when credentials are missing or wrong", () =>
    Effect.gen(function* () {
      const missing = yield* attempt(basic, get())
      expect([missing.status, missing.challenge, missing.body]).toEqual([401, challenge, unauthorizedBody])
      const otherScheme = yield* attempt(basic, get({ authorization: "Bearer abc" }))
      expect([otherScheme.status, otherScheme.challenge]).toEqual([401, challenge])
      const wrong = yield* attempt(basic, get({ authorization: `Basic ${b64("ada:wrong horse")}` }))
      expect([wrong.status, wrong.challenge, wrong.body]).toEqual([401, challenge, unauthorizedBody])
      expect(reasonOf(wrong)).toBe("basic credentials rejected")
      expectNoLeak(wrong, "wrong horse")
      expectNoLeak(wrong, b64("ada:wrong horse"))
      const unknown = yield* attempt(basic, get({ authorization: `Basic ${b64("eve:x")}` }))
      expect(unknown.status).toBe(401)
    })
  )

  it.effect("answers 401, not a crash, to malformed credentials, without calling verify", () =>
    Effect.gen(function* () {
      seen.length = 0
      const malformed = [
        "Basic",
        "Basic ",
        "Basic !!!!",
        "Basic YWRh*OmI=",
        `Basic ${b64("no colon here")}`,
        `Basic ${Buffer.from([0xff, 0xfe, 0x3a, 0x61]).toString("base64")}`,
        `Basic ${b64("ada\u0000:x")}`,
        `Basic ${b64("ada:x")} trailing`,
        // Non-canonical base64: the last character carries bits Node would silently drop.
        "Basic YWRhOmJ="
      ]
      for (const authorization of malformed) {
        const outcome = yield* attempt(basic, get({ authorization }))
        expect([authorization, outcome.status, outcome.challenge]).toEqual([authorization, 401, challenge])
        expect(reasonOf(outcome)).toBe("malformed basic credentials")
      }
      expect(seen).toEqual([])
    })
  )

  it.effect("wrong credentials take the same path as right ones: one verify call, same comparisons", () =>
    Effect.gen(function* () {
      seen.length = 0
      let calls = counted()
      yield* attempt(basic, get({ authorization: `Basic ${b64("ada:correct horse:battery")}` }))
      const right = calls()
      calls = counted()
      yield* attempt(basic, get({ authorization: `Basic ${b64("ada:x")}` }))
      const wrong = calls()
      calls = counted()
      yield* attempt(basic, get({ authorization: `Basic ${b64("nobody:x")}` }))
      const noUser = calls()
      expect(seen.length).toBe(3)
      expect(wrong).toEqual(right)
      expect(noUser).toEqual(right)
      expect(right.compares).toBeGreaterThan(0)
    })
  )

  it.effect("gives verify the password redacted", () =>
    Effect.gen(function* () {
      seen.length = 0
      yield* attempt(basic, get({ authorization: `Basic ${b64("ada:correct horse:battery")}` }))
      expect(seen[0]!.username).toBe("ada")
      expect(seen[0]!.shown).not.toContain("correct horse")
    })
  )

  it("refuses a realm that would break the header", () => {
    expect(() =>
      Auth.basic({ provides: CurrentUser, realm: "a\r\nSet-Cookie: x=1", verify: () => Effect.succeed(ada) })
    ).toThrow("realm must be printable ASCII")
  })
})

class UsersDown extends HttpError.Class("UsersDown", { status: 503 })<{}> {}

describe("Auth.bearer", () => {
  const bearer = Auth.bearer({
    provides: CurrentUser,
    realm: "api",
    verify: Auth.apiKeyTable({ "tok-ada.1~": ada, "tok-bob": bob })
  })
  const missing = 'Bearer realm="api"'
  const invalid = 'Bearer realm="api", error="invalid_token"'

  it.effect("accepts a known token and provides its user", () =>
    Effect.gen(function* () {
      const ok = yield* attempt(bearer, get({ authorization: "Bearer tok-ada.1~" }))
      expect([ok.status, ok.user]).toEqual([200, ada])
      expect((yield* attempt(bearer, get({ authorization: "bearer tok-bob" }))).user).toEqual(bob)
    })
  )

  it.effect("no token: 401 with a challenge and no error code (RFC 6750 §3.1)", () =>
    Effect.gen(function* () {
      for (const headers of [{}, { authorization: "Basic YWRhOmI=" }]) {
        const outcome = yield* attempt(bearer, get(headers))
        expect([outcome.status, outcome.challenge, outcome.body]).toEqual([401, missing, unauthorizedBody])
      }
    })
  )

  it.effect(
    'a rejected or malformed token: 401 with error="invalid_token", the token nowhere in the answer',
    () =>
      Effect.gen(function* () {
        for (const authorization of ["Bearer tok-eve", "Bearer", "Bearer a b", "Bearer tök", "Bearer =abc"]) {
          const outcome = yield* attempt(bearer, get({ authorization }))
          expect([authorization, outcome.status, outcome.challenge, outcome.body]).toEqual([
            authorization,
            401,
            invalid,
            unauthorizedBody
          ])
          const token = authorization.slice("Bearer ".length)
          if (token !== "") expectNoLeak(outcome, token)
        }
      })
  )

  it.effect("wrong tokens take the same path as right ones: comparison is verify's (here the table's)", () =>
    Effect.gen(function* () {
      let calls = counted()
      yield* attempt(bearer, get({ authorization: "Bearer tok-ada.1~" }))
      const right = calls()
      calls = counted()
      yield* attempt(bearer, get({ authorization: "Bearer tok-adb.1~" }))
      expect(calls()).toEqual(right)
    })
  )

  it.effect("the errors of verify pass on, listed in raises", () =>
    Effect.gen(function* () {
      const down = Auth.bearer({
        provides: CurrentUser,
        realm: "api",
        raises: ["UsersDown"],
        verify: () => Effect.fail(new UsersDown())
      })
      const outcome = yield* attempt(down, get({ authorization: "Bearer tok-ada" }))
      expect(outcome.status).toBe(503)
      expect(down.entries[0]!.info).toEqual({
        name: "auth:bearer",
        provides: ["test/CurrentUser"],
        requires: [],
        raises: ["Unauthorized", "UsersDown"],
        handles: []
      })
    })
  )
})

describe("Auth.apiKey", () => {
  const table = { "key-ada-0123456789": ada, "key-bob-0123456789": bob }
  const inHeader = Auth.apiKey({
    provides: CurrentUser,
    in: "header",
    name: "X-API-Key",
    verify: Auth.apiKeyTable(table)
  })
  const inQuery = Auth.apiKey({
    provides: CurrentUser,
    in: "query",
    name: "api_key",
    verify: Auth.apiKeyTable(table)
  })
  const inCookie = Auth.apiKey({
    provides: CurrentUser,
    in: "cookie",
    name: "key",
    realm: "console",
    verify: Auth.apiKeyTable(table)
  })

  it.effect("reads the key from a header, a query parameter or a cookie", () =>
    Effect.gen(function* () {
      expect((yield* attempt(inHeader, get({ "x-api-key": "key-ada-0123456789" }))).user).toEqual(ada)
      expect((yield* attempt(inQuery, get({}, "http://x/me?api_key=key-bob-0123456789"))).user).toEqual(bob)
      expect((yield* attempt(inCookie, get({ cookie: "key=key-ada-0123456789" }))).user).toEqual(ada)
      expect(inHeader.entries[0]!.info.name).toBe("auth:apiKey(header x-api-key)")
    })
  )

  it.effect("missing, empty, repeated or wrong keys: 401 with the ApiKey challenge", () =>
    Effect.gen(function* () {
      const challenge = 'ApiKey realm="api", in="header", name="X-API-Key"'
      for (const headers of [{}, { "x-api-key": "" }, { "x-api-key": "key-eve-0123456789" }]) {
        const outcome = yield* attempt(inHeader, get(headers))
        expect([outcome.status, outcome.challenge, outcome.body]).toEqual([401, challenge, unauthorizedBody])
      }
      const twice = yield* attempt(
        inQuery,
        get({}, "http://x/me?api_key=key-bob-0123456789&api_key=key-eve-0123456789")
      )
      expect([twice.status, reasonOf(twice)]).toEqual([401, "more than one api key"])
      const cookie = yield* attempt(inCookie, get({ cookie: "key=nope" }))
      expect([cookie.status, cookie.challenge]).toEqual([
        401,
        'ApiKey realm="console", in="cookie", name="key"'
      ])
    })
  )

  it.effect("the table compares with every stored key: right and wrong keys take the same path", () =>
    Effect.gen(function* () {
      const verify = Auth.apiKeyTable({ first: ada, second: bob, third: ada })
      const runs: Array<ReturnType<ReturnType<typeof counted>>> = []
      for (const key of ["first", "third", "wrong", "a much longer wrong key than any stored one"]) {
        const calls = counted()
        const user = yield* verify(Redacted.make(key))
        expect(user).toEqual(key === "first" || key === "third" ? ada : undefined)
        runs.push(calls())
      }
      // One hash of the presented key, one timingSafeEqual per stored key, whatever the key.
      expect(runs).toEqual(runs.map(() => ({ hashes: 1, compares: 3 })))
    })
  )

  it("constantTimeEqual compares values, plain or redacted", () => {
    expect(Auth.constantTimeEqual("a", Redacted.make("a"))).toBe(true)
    expect(Auth.constantTimeEqual("a", "ab")).toBe(false)
  })
})

// ---------------------------------------------------------------------------------------------
// JWT
// ---------------------------------------------------------------------------------------------

const T0 = 1_750_000_000 // seconds; the TestClock is set here
const secret = Redacted.make("s3cret-0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
const secretBytes = new TextEncoder().encode(Redacted.value(secret))
const rsa = await Jose.generateKeyPair("RS256")
const ec = await Jose.generateKeyPair("ES256")
const rsaJwk = { ...(await Jose.exportJWK(rsa.publicKey)), kid: "rsa-1", alg: "RS256", use: "sig" }
const ecJwk = { ...(await Jose.exportJWK(ec.publicKey)), kid: "ec-1", alg: "ES256", use: "sig" }

const UserSchema = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  role: Schema.Literals(["admin", "member"])
})
const UserFromClaims = Schema.Struct({
  sub: Schema.String,
  name: Schema.String,
  role: Schema.Literals(["admin", "member"])
}).pipe(
  Schema.decodeTo(
    UserSchema,
    SchemaTransformation.transform({
      decode: (claims) => ({ id: claims.sub, name: claims.name, role: claims.role }),
      encode: (user) => ({ sub: user.id, name: user.name, role: user.role })
    })
  )
)

const claims = (extra: Record<string, unknown> = {}): Jose.JWTPayload => ({
  sub: ada.id,
  name: ada.name,
  role: ada.role,
  iss: "https://issuer.test",
  aud: "api",
  iat: T0,
  exp: T0 + 60,
  ...extra
})

const sign = (
  payload: Jose.JWTPayload,
  alg: string,
  key: Jose.CryptoKey | Uint8Array,
  header: Record<string, unknown> = {}
) => Effect.promise(() => new Jose.SignJWT(payload).setProtectedHeader({ alg, ...header }).sign(key))

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url")

const hs = Auth.jwt({
  provides: CurrentUser,
  secret,
  algorithms: ["HS256"],
  issuer: "https://issuer.test",
  audience: "api",
  decode: UserFromClaims
})

const withJwks = Auth.jwt({
  provides: CurrentUser,
  jwks: { keys: [rsaJwk, ecJwk] },
  algorithms: ["RS256", "ES256"],
  issuer: ["https://issuer.test", "https://other.test"],
  audience: "api",
  decode: UserFromClaims
})

const bearerOf = (token: string) => get({ authorization: `Bearer ${token}` })
const atT0 = TestClock.setTime(T0 * 1000)
const invalidToken = 'Bearer realm="api", error="invalid_token"'

const expectRejected = (outcome: Outcome, token: string, reason?: string) => {
  expect([outcome.status, outcome.challenge, outcome.body]).toEqual([401, invalidToken, unauthorizedBody])
  expectNoLeak(outcome, token)
  if (reason !== undefined) expect(reasonOf(outcome)).toBe(reason)
}

describe("Auth.jwt", () => {
  it.effect("HS256 with a secret: a good token provides the decoded user", () =>
    Effect.gen(function* () {
      yield* atT0
      const token = yield* sign(claims(), "HS256", secretBytes)
      const ok = yield* attempt(hs, bearerOf(token))
      expect([ok.status, ok.user]).toEqual([200, ada])
    })
  )

  it.effect("several HMAC algorithms share one secret, each verified with its own hash", () =>
    Effect.gen(function* () {
      yield* atT0
      const both = Auth.jwt({
        provides: CurrentUser,
        secret,
        algorithms: ["HS256", "HS512"],
        issuer: "https://issuer.test",
        audience: "api",
        decode: UserFromClaims
      })
      // Twice each, in alternation.
      for (let round = 0; round < 2; round++) {
        for (const alg of ["HS256", "HS512"]) {
          const token = yield* sign(claims(), alg, secretBytes)
          expect((yield* attempt(both, bearerOf(token))).user).toEqual(ada)
        }
      }
      // A token whose header says HS512 but was signed with HS256 fails: keys are not reused across hashes.
      const hs256 = yield* sign(claims(), "HS256", secretBytes)
      const [, payload, signature] = hs256.split(".")
      const relabelled = `${b64url({ alg: "HS512", typ: "JWT" })}.${payload}.${signature}`
      expectRejected(yield* attempt(both, bearerOf(relabelled)), relabelled)
    })
  )

  it.effect("RS256 and ES256 through a local JWKS", () =>
    Effect.gen(function* () {
      yield* atT0
      const viaRsa = yield* sign(claims(), "RS256", rsa.privateKey, { kid: "rsa-1" })
      expect((yield* attempt(withJwks, bearerOf(viaRsa))).user).toEqual(ada)
      const viaEc = yield* sign(
        claims({ sub: bob.id, name: bob.name, role: bob.role, iss: "https://other.test" }),
        "ES256",
        ec.privateKey,
        { kid: "ec-1" }
      )
      expect((yield* attempt(withJwks, bearerOf(viaEc))).user).toEqual(bob)
    })
  )

  it.effect("no token: the plain Bearer challenge", () =>
    Effect.gen(function* () {
      const outcome = yield* attempt(hs, get())
      expect([outcome.status, outcome.challenge]).toEqual([401, 'Bearer realm="api"'])
    })
  )

  it.effect("alg: none is rejected, with or without a signature", () =>
    Effect.gen(function* () {
      yield* atT0
      const unsigned = `${b64url({ alg: "none", typ: "JWT" })}.${b64url(claims())}.`
      expectRejected(yield* attempt(hs, bearerOf(unsigned)), unsigned)
      expectRejected(yield* attempt(withJwks, bearerOf(unsigned)), unsigned)
      const good = yield* sign(claims(), "HS256", secretBytes)
      const relabelled = `${b64url({ alg: "none" })}.${good.split(".")[1]}.${good.split(".")[2]}`
      expectRejected(yield* attempt(hs, bearerOf(relabelled)), relabelled)
    })
  )

  it.effect("algorithms outside the allowlist are rejected (and a public key is no HMAC secret)", () =>
    Effect.gen(function* () {
      yield* atT0
      const hs384 = yield* sign(claims(), "HS384", secretBytes)
      expectRejected(yield* attempt(hs, bearerOf(hs384)), hs384, "algorithm not allowed")
      const rs = yield* sign(claims(), "RS256", rsa.privateKey, { kid: "rsa-1" })
      expectRejected(yield* attempt(hs, bearerOf(rs)), rs, "algorithm not allowed")
      // Algorithm confusion: an HS256 token keyed with the RSA public key, sent to the JWKS verifier.
      const pem = yield* Effect.promise(() => Jose.exportSPKI(rsa.publicKey))
      const confused = yield* sign(claims(), "HS256", new TextEncoder().encode(pem), { kid: "rsa-1" })
      expectRejected(yield* attempt(withJwks, bearerOf(confused)), confused, "algorithm not allowed")
      const onlyRs = Auth.jwt({
        provides: CurrentUser,
        jwks: { keys: [rsaJwk, ecJwk] },
        algorithms: ["RS256"],
        decode: UserFromClaims
      })
      const es = yield* sign(claims(), "ES256", ec.privateKey, { kid: "ec-1" })
      expectRejected(yield* attempt(onlyRs, bearerOf(es)), es, "algorithm not allowed")
    })
  )

  it.effect("a wrong issuer or audience is rejected", () =>
    Effect.gen(function* () {
      yield* atT0
      const iss = yield* sign(claims({ iss: "https://evil.test" }), "HS256", secretBytes)
      expectRejected(yield* attempt(hs, bearerOf(iss)), iss, "claim iss: check_failed")
      const aud = yield* sign(claims({ aud: "other-api" }), "HS256", secretBytes)
      expectRejected(yield* attempt(hs, bearerOf(aud)), aud, "claim aud: check_failed")
      const noAud = yield* sign(claims({ aud: undefined }), "HS256", secretBytes)
      expectRejected(yield* attempt(hs, bearerOf(noAud)), noAud, "claim aud: missing")
    })
  )

  it.effect("expired and not-yet-valid tokens are rejected; time is the Effect Clock", () =>
    Effect.gen(function* () {
      yield* atT0
      const expired = yield* sign(claims({ exp: T0 - 60 }), "HS256", secretBytes)
      expectRejected(yield* attempt(hs, bearerOf(expired)), expired, "token expired")
      const early = yield* sign(claims({ nbf: T0 + 60 }), "HS256", secretBytes)
      expectRejected(yield* attempt(hs, bearerOf(early)), early, "claim nbf: check_failed")
      // Valid now, expired once the clock moves past exp and the tolerance.
      const good = yield* sign(claims({ exp: T0 + 60 }), "HS256", secretBytes)
      expect((yield* attempt(hs, bearerOf(good))).status).toBe(200)
      yield* TestClock.adjust("66 seconds")
      expectRejected(yield* attempt(hs, bearerOf(good)), good, "token expired")
    })
  )

  it.effect("the clock tolerance (default 5 s) is honoured in both directions", () =>
    Effect.gen(function* () {
      yield* atT0
      const statusOf = (middleware: typeof hs, extra: Record<string, unknown>) =>
        Effect.flatMap(sign(claims(extra), "HS256", secretBytes), (token) =>
          Effect.map(attempt(middleware, bearerOf(token)), (o) => o.status)
        )
      expect(yield* statusOf(hs, { exp: T0 - 4 })).toBe(200)
      expect(yield* statusOf(hs, { exp: T0 - 6 })).toBe(401)
      expect(yield* statusOf(hs, { nbf: T0 + 4 })).toBe(200)
      expect(yield* statusOf(hs, { nbf: T0 + 6 })).toBe(401)
      const lenient = Auth.jwt({
        provides: CurrentUser,
        secret,
        algorithms: ["HS256"],
        clockTolerance: "1 minute",
        decode: UserFromClaims
      })
      expect(yield* statusOf(lenient, { exp: T0 - 50 })).toBe(200)
      expect(yield* statusOf(lenient, { nbf: T0 + 50 })).toBe(200)
      expect(yield* statusOf(lenient, { exp: T0 - 70 })).toBe(401)
      expect(yield* statusOf(lenient, { nbf: T0 + 70 })).toBe(401)
    })
  )

  it.effect("a payload changed by a single byte fails the signature", () =>
    Effect.gen(function* () {
      yield* atT0
      const token = yield* sign(claims({ sub: bob.id, name: bob.name, role: bob.role }), "HS256", secretBytes)
      const [header, payload, signature] = token.split(".") as [string, string, string]
      const json = Buffer.from(payload, "base64url")
      const at = json.indexOf(`"sub":"${bob.id}"`) + `"sub":"`.length
      json[at] = ada.id.charCodeAt(0) // "2" → "1": Bob tries to become Ada
      const tampered = `${header}.${json.toString("base64url")}.${signature}`
      expectRejected(yield* attempt(hs, bearerOf(tampered)), tampered, "bad signature")
      const rs = yield* sign(claims(), "RS256", rsa.privateKey, { kid: "rsa-1" })
      const [h, p, s] = rs.split(".") as [string, string, string]
      const flipped = `${h}.${p}.${s.slice(0, 10)}${s[10] === "A" ? "B" : "A"}${s.slice(11)}`
      expectRejected(yield* attempt(withJwks, bearerOf(flipped)), flipped)
    })
  )

  it.effect("malformed tokens, tokens without exp and claims that do not decode are rejected", () =>
    Effect.gen(function* () {
      yield* atT0
      for (const token of ["abc", "a.b.c", "a.b", `${b64url({ alg: "HS256" })}.bm90IGpzb24.c2ln`]) {
        expectRejected(yield* attempt(hs, bearerOf(token)), token)
      }
      const forever = yield* sign(claims({ exp: undefined }), "HS256", secretBytes)
      expectRejected(yield* attempt(hs, bearerOf(forever)), forever, "claim exp: missing")
      const optIn = Auth.jwt({
        provides: CurrentUser,
        secret,
        algorithms: ["HS256"],
        requiredClaims: [],
        decode: UserFromClaims
      })
      expect((yield* attempt(optIn, bearerOf(forever))).user).toEqual(ada)
      const root = yield* sign(claims({ role: "root" }), "HS256", secretBytes)
      expectRejected(yield* attempt(hs, bearerOf(root)), root, "claims do not decode")
      const unknownKid = yield* sign(
        claims(),
        "RS256",
        (yield* Effect.promise(() => Jose.generateKeyPair("RS256"))).privateKey,
        {
          kid: "rsa-2"
        }
      )
      expectRejected(yield* attempt(withJwks, bearerOf(unknownKid)), unknownKid, "no matching key")
    })
  )

  it("refuses unsafe configurations when built", () => {
    const base = { provides: CurrentUser, decode: UserFromClaims }
    expect(() => Auth.jwt({ ...base, secret, algorithms: [] as any })).toThrow("algorithms must not be empty")
    expect(() => Auth.jwt({ ...base, secret, algorithms: ["none"] as any })).toThrow("algorithm none")
    expect(() => Auth.jwt({ ...base, secret, algorithms: ["RS256"] as any })).toThrow("algorithm RS256")
    expect(() => Auth.jwt({ ...base, jwks: { keys: [rsaJwk] }, algorithms: ["HS256"] as any })).toThrow(
      "algorithm HS256"
    )
    expect(() => Auth.jwt({ ...base, secret: Redacted.make("short"), algorithms: ["HS256"] })).toThrow(
      "at least 32 bytes"
    )
    expect(() =>
      Auth.jwt({ ...base, secret: Redacted.make("x".repeat(40)), algorithms: ["HS256", "HS512"] })
    ).toThrow("at least 64 bytes")
  })

  describe("remote JWKS", () => {
    // A JWKS endpoint on 127.0.0.1, started and stopped by the test.
    const jwksServer = (initial: Jose.JSONWebKeySet) =>
      Effect.acquireRelease(
        Effect.promise(
          () =>
            new Promise<{
              readonly url: string
              readonly hits: () => number
              readonly publish: (set: Jose.JSONWebKeySet) => void
              readonly close: () => Promise<void>
            }>((resolve) => {
              let set = initial
              let hits = 0
              const server = createServer((request, response) => {
                hits++
                if (request.url !== "/.well-known/jwks.json") return void response.writeHead(404).end()
                response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(set))
              })
              const close = () =>
                new Promise<void>((done) => {
                  server.closeAllConnections()
                  server.close(() => done())
                })
              server.listen(0, "127.0.0.1", () => {
                const { port } = server.address() as AddressInfo
                resolve({
                  url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
                  hits: () => hits,
                  publish: (next) => void (set = next),
                  close
                })
              })
            })
        ),
        (server) => Effect.promise(() => server.close().catch(() => undefined))
      )

    it.effect("verifies with a fetched key set, caches it, refetches for a new kid", () =>
      Effect.gen(function* () {
        yield* atT0
        const server = yield* jwksServer({ keys: [rsaJwk] })
        const remote = Auth.jwt({
          provides: CurrentUser,
          jwks: { url: server.url, cooldown: 0 },
          algorithms: ["RS256", "ES256"],
          audience: "api",
          decode: UserFromClaims
        })
        const token = yield* sign(claims(), "RS256", rsa.privateKey, { kid: "rsa-1" })
        expect((yield* attempt(remote, bearerOf(token))).user).toEqual(ada)
        expect((yield* attempt(remote, bearerOf(token))).user).toEqual(ada)
        expect(server.hits()).toBe(1)
        // Key rotation: the issuer publishes a new key; a token with its kid makes the set refetch.
        server.publish({ keys: [rsaJwk, ecJwk] })
        const rotated = yield* sign(
          claims({ sub: bob.id, name: bob.name, role: bob.role }),
          "ES256",
          ec.privateKey,
          {
            kid: "ec-1"
          }
        )
        expect((yield* attempt(remote, bearerOf(rotated))).user).toEqual(bob)
        expect(server.hits()).toBe(2)
        const tampered = `${token.slice(0, -4)}AAAA`
        expectRejected(yield* attempt(remote, bearerOf(tampered)), tampered)
      })
    )

    it.effect("an unreachable key set is a 503, not a rejected token", () =>
      Effect.gen(function* () {
        yield* atT0
        const server = yield* jwksServer({ keys: [rsaJwk] })
        yield* Effect.promise(() => server.close())
        const remote = Auth.jwt({
          provides: CurrentUser,
          jwks: { url: server.url, timeout: "2 seconds" },
          algorithms: ["RS256"],
          decode: UserFromClaims
        })
        const token = yield* sign(claims(), "RS256", rsa.privateKey, { kid: "rsa-1" })
        const outcome = yield* attempt(remote, bearerOf(token))
        expect(outcome.status).toBe(503)
        expect((outcome.error as { _tag: string })._tag).toBe("ServiceUnavailable")
        expectNoLeak(outcome, token)
        expect(remote.entries[0]!.info.raises).toEqual(["Unauthorized", "ServiceUnavailable"])
      })
    )
  })
})

// ---------------------------------------------------------------------------------------------
// Session user and oneOf, through a whole app
// ---------------------------------------------------------------------------------------------

class AppSession extends Session.Service<AppSession>()("test/AuthSession", {
  schema: Schema.Struct({ userId: Schema.optional(Schema.String), theme: Schema.optional(Schema.String) })
}) {}

const sessionMiddleware = Session.middleware(AppSession, {
  cookie: { keys: [Redacted.make("auth-test-key-0123456789abcdef0123456789")], secure: false }
})

const loads: Array<string> = []
const fromSession = Auth.sessionUser({
  provides: CurrentUser,
  session: AppSession,
  key: "userId",
  load: (id) =>
    Effect.gen(function* () {
      loads.push(id)
      return yield* (yield* Users).find(id)
    })
})

const login = Route.post(
  "/login/:id",
  Effect.gen(function* () {
    const { id } = yield* HttpRouter.params
    const session = yield* AppSession
    yield* session.regenerate
    yield* session.set("userId", id)
    return HttpServerResponse.text("ok")
  })
)
const visit = Route.post(
  "/visit",
  Effect.as(
    Effect.flatMap(AppSession, (s) => s.set("theme", "dark")),
    HttpServerResponse.text("ok")
  )
)
const me = Route.get(
  "/me",
  Effect.map(CurrentUser, (user) => HttpServerResponse.jsonUnsafe(user))
)

const cookieOf = (response: Response) => response.headers.get("set-cookie")!.split(";")[0]!

describe("Auth.sessionUser", () => {
  const app = Router.make([login, visit, Router.group("/api", [me]).pipe(Router.use(fromSession))]).pipe(
    Router.use(sessionMiddleware)
  )
  const { handler, dispose } = App.toWebHandler(app, Layer.mergeAll(UsersLive, Session.layerMemory()))
  afterAll(() => dispose())

  it("provides the user whose id the session holds", async () => {
    const cookie = cookieOf(await handler(new Request("http://x/login/1", { method: "POST" })))
    const res = await handler(new Request("http://x/api/me", { headers: { cookie } }))
    expect([res.status, await res.json()]).toEqual([200, ada])
  })

  it("no session, no user id in it, or an unknown user: 401 with the Cookie challenge", async () => {
    loads.length = 0
    const none = await handler(new Request("http://x/api/me"))
    expect([none.status, none.headers.get("www-authenticate"), await none.text()]).toEqual([
      401,
      'Cookie realm="app"',
      unauthorizedBody
    ])
    const anonymous = cookieOf(await handler(new Request("http://x/visit", { method: "POST" })))
    expect((await handler(new Request("http://x/api/me", { headers: { cookie: anonymous } }))).status).toBe(
      401
    )
    expect(loads).toEqual([])
    const ghost = cookieOf(await handler(new Request("http://x/login/9", { method: "POST" })))
    expect((await handler(new Request("http://x/api/me", { headers: { cookie: ghost } }))).status).toBe(401)
    expect(loads).toEqual(["9"])
  })

  it("lists the session it requires in the manifest", () => {
    const route = Router.manifest(app).find((r) => r.path === "/api/me")!
    expect(route.middleware.map((m) => [m.name, m.requires])).toEqual([
      ["session", []],
      ["auth:session", ["test/AuthSession"]]
    ])
  })
})

describe("Middleware.oneOf of bearer, api key and session user", () => {
  const anyUser = Middleware.oneOf({
    bearer: Auth.bearer({
      provides: CurrentUser,
      realm: "api",
      verify: Auth.apiKeyTable({ "tok-ada": ada })
    }),
    apiKey: Auth.apiKey({
      provides: CurrentUser,
      in: "header",
      name: "X-API-Key",
      verify: Auth.apiKeyTable({ "key-bob-0123456789": bob })
    }),
    session: fromSession
  })
  const who = Route.get(
    "/who",
    Effect.gen(function* () {
      const user = yield* CurrentUser
      const matched = yield* Middleware.Matched
      return HttpServerResponse.jsonUnsafe({ user: user.id, via: matched.name })
    })
  )
  const app = Router.make([login, Router.group("/any", [who]).pipe(Router.use(anyUser))]).pipe(
    Router.use(sessionMiddleware)
  )
  const { handler, dispose } = App.toWebHandler(app, Layer.mergeAll(UsersLive, Session.layerMemory()))
  afterAll(() => dispose())
  const ask = async (headers: Record<string, string>) => {
    const res = await handler(new Request("http://x/any/who", { headers }))
    return [res.status, res.status === 200 ? await res.json() : res.headers.get("www-authenticate")]
  }

  it("takes the first alternative that matches", async () => {
    const cookie = cookieOf(await handler(new Request("http://x/login/2", { method: "POST" })))
    expect(await ask({ authorization: "Bearer tok-ada" })).toEqual([200, { user: "1", via: "bearer" }])
    expect(await ask({ "x-api-key": "key-bob-0123456789" })).toEqual([200, { user: "2", via: "apiKey" }])
    expect(await ask({ cookie })).toEqual([200, { user: "2", via: "session" }])
    // Several credentials: the first alternative that accepts wins; a rejected one falls through.
    expect(await ask({ authorization: "Bearer tok-ada", "x-api-key": "key-bob-0123456789" })).toEqual([
      200,
      { user: "1", via: "bearer" }
    ])
    expect(await ask({ authorization: "Bearer tok-eve", cookie })).toEqual([
      200,
      { user: "2", via: "session" }
    ])
  })

  it("all failing: 401 with every challenge", async () => {
    expect(await ask({})).toEqual([
      401,
      'Bearer realm="api", ApiKey realm="api", in="header", name="X-API-Key", Cookie realm="app"'
    ])
    expect(await ask({ authorization: "Bearer tok-eve", "x-api-key": "nope" })).toEqual([
      401,
      'Bearer realm="api", error="invalid_token", ApiKey realm="api", in="header", name="X-API-Key", Cookie realm="app"'
    ])
  })
})

// ---------------------------------------------------------------------------------------------
// HMAC tokens are verified with node:crypto, not by jose: the decision must be jose's, for any token.
// ---------------------------------------------------------------------------------------------
describe("Auth.jwt with a secret decides as jose's jwtVerify does", () => {
  const otherSecret = new TextEncoder().encode(
    "another-secret-0123456789abcdef0123456789abcdef0123456789abcdef"
  )
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url")
  const hmac = (alg: string, key: Uint8Array, input: string) =>
    crypto
      .createHmac(alg === "HS384" ? "sha384" : alg === "HS512" ? "sha512" : "sha256", key)
      .update(input)
      .digest("base64url")

  // Each field is usually valid and sometimes not, so the sample holds both answers.
  const mostly = <A>(good: fc.Arbitrary<A>, bad: fc.Arbitrary<unknown>) =>
    fc.oneof({ weight: 5, arbitrary: good as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: bad })
  const absent = Symbol("absent")
  const defined = (entries: Record<string, unknown>) =>
    Object.fromEntries(Object.entries(entries).filter(([, value]) => value !== absent))
  const header = fc
    .record({
      alg: mostly(
        fc.constantFrom("HS256", "HS512"),
        fc.constantFrom("HS384", "none", "RS256", "", 256, "hs256")
      ),
      typ: mostly(fc.constantFrom(absent, "JWT", "at+jwt", "application/at+jwt", "AT+JWT"), fc.constant(5)),
      crit: mostly(fc.constant(absent), fc.constantFrom(["b64"], ["exp"], [], "b64")),
      b64: mostly(fc.constant(absent), fc.constantFrom(true, false, "false")),
      kid: fc.constantFrom(absent, "k1")
    })
    .map(defined)
  const numericDate = (good: fc.Arbitrary<number | typeof absent>) =>
    mostly(good, fc.constantFrom("soon", null, T0 + 0.5, Number.MAX_SAFE_INTEGER, T0 - 3600, T0 + 3600))
  const payload = fc.oneof(
    {
      weight: 8,
      arbitrary: fc
        .record({
          iss: mostly(fc.constant("https://issuer.test"), fc.constantFrom(absent, "https://other.test", 5)),
          aud: mostly(fc.constantFrom("api", ["api", "web"]), fc.constantFrom(absent, ["web"], [], 5, [5])),
          exp: numericDate(fc.integer({ min: -10, max: 120 }).map((offset) => T0 + offset)),
          nbf: numericDate(
            fc.oneof(
              fc.constant(absent),
              fc.integer({ min: -120, max: 10 }).map((o) => T0 + o)
            )
          ),
          iat: numericDate(
            fc.oneof(
              fc.constant(absent),
              fc.integer({ min: -120, max: 10 }).map((o) => T0 + o)
            )
          )
        })
        .map((c) => ({ sub: ada.id, name: ada.name, role: ada.role, ...defined(c) }))
    },
    { weight: 1, arbitrary: fc.constantFrom<unknown>([], 5, "text", null) }
  )
  const signature = mostly(
    fc.constant("right"),
    fc.constantFrom("other key", "flipped", "empty", "junk", "padded")
  )
  const token = fc.tuple(header, payload, signature).map(([h, p, s]) => {
    const input = `${encode(h)}.${encode(p)}`
    const alg = typeof h["alg"] === "string" && h["alg"].startsWith("HS") ? h["alg"] : "HS256"
    const right = hmac(alg, secretBytes, input)
    const sig =
      s === "right"
        ? right
        : s === "other key"
          ? hmac(alg, otherSecret, input)
          : s === "flipped"
            ? `${right.slice(0, 5)}${right[5] === "A" ? "B" : "A"}${right.slice(6)}`
            : s === "empty"
              ? ""
              : s === "junk"
                ? `${right.slice(0, 10)}!${right.slice(10)}`
                : `${right}=`
    // RFC 7515 signatures are unpadded base64url; jose also takes a padded one, Strata does not.
    return { jwt: `${input}.${sig}`, canonical: s !== "padded" }
  })

  const verifier = (typ: string | undefined) =>
    Auth.jwt({
      provides: CurrentUser,
      secret,
      algorithms: ["HS256", "HS512"],
      issuer: "https://issuer.test",
      audience: "api",
      ...(typ === undefined ? {} : { typ }),
      decode: UserFromClaims
    })
  const withoutTyp = verifier(undefined)
  const withTyp = verifier("at+jwt")

  const jose = (jwt: string, typ: string | undefined) =>
    Jose.jwtVerify(jwt, secretBytes, {
      algorithms: ["HS256", "HS512"],
      issuer: "https://issuer.test",
      audience: "api",
      clockTolerance: 5,
      requiredClaims: ["exp"],
      currentDate: new Date(T0 * 1000),
      ...(typ === undefined ? {} : { typ })
    }).then(
      (verified) => Schema.decodeUnknownExit(UserFromClaims)(verified.payload)._tag === "Success",
      () => false
    )

  it.effect(
    "accepts exactly the tokens jose accepts (and whose claims decode), padded signatures aside",
    () =>
      Effect.gen(function* () {
        yield* atT0
        const cases = fc.sample(token, { numRuns: 600 })
        let accepted = 0
        for (const { canonical, jwt } of cases) {
          for (const typ of [undefined, "at+jwt"]) {
            const ours = (yield* attempt(typ === undefined ? withoutTyp : withTyp, bearerOf(jwt))).status
            const theirs = canonical && (yield* Effect.promise(() => jose(jwt, typ)))
            expect([jwt, typ, ours]).toEqual([jwt, typ, theirs ? 200 : 401])
            if (theirs) accepted++
          }
        }
        // The sample must hold both answers, or it says nothing.
        expect(accepted).toBeGreaterThan(60)
      })
  )
})
