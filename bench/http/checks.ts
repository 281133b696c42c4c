/**
 * What "answers right" means, checked before a server is loaded: status, body and the headers the
 * workload is about. A server that fails any check is reported and not benchmarked, so no figure
 * comes from a server that skipped work the others do.
 */
import { deepStrictEqual } from "node:assert/strict"
import { request } from "node:http"
import { type ServerName, serverNames } from "./child.ts"
import { JWT_SUBJECT, type StaticFixture, type Tokens } from "./fixtures.ts"
import {
  CHALLENGE,
  INVALID_TOKEN_CHALLENGE,
  loginBody,
  meBody,
  REQUEST_ID_HEADER,
  sampleOrder,
  sampleUser,
  SESSION_COOKIE,
  STATIC_CACHE_CONTROL,
  STATIC_FILE,
  STATIC_SIZE,
  TOKEN,
  userBody
} from "./shared.ts"

export const workloadNames = ["hello", "stack", "json", "session+jwt", "json-schema", "static"] as const
export type WorkloadName = (typeof workloadNames)[number]

/**
 * The servers that take part in each workload. Raw Effect has no sessions (it would mean writing a
 * session store and signed cookies by hand) and no JWT verification, so it sits out `session+jwt`;
 * Hono and node:http sit it out too (the comparison asked for is Strata against Fastify's plugins).
 * Hono's `serveStatic` sends neither ETag nor 304s, so Hono sits out `static`.
 */
export const participants: Record<WorkloadName, ReadonlyArray<ServerName>> = {
  hello: serverNames,
  stack: serverNames,
  json: serverNames,
  "session+jwt": ["strata", "fastify"],
  "json-schema": serverNames,
  static: ["strata", "effect", "fastify", "node"]
}

export const takesPart = (server: ServerName, workload: WorkloadName): boolean =>
  participants[workload].includes(server)

/** What the runner made before starting any server, which some checks and loads need. */
export interface Fixtures {
  readonly tokens: Tokens
  readonly static: StaticFixture
}

/** One request the load repeats. */
export interface LoadRequest {
  readonly method: "GET" | "POST" | "HEAD"
  readonly path: string
  readonly headers: Record<string, string>
  readonly body?: string
}

/** A session cookie among a few others, as a browser would send. */
const COOKIE = "theme=dark; sid=s3ss10n-4f9b2c; lang=en-GB; consent=%7B%22ads%22%3Afalse%7D"

/** The `session+jwt` request's cookies: the session's (`sid=…`) between two others. */
const withSession = (session: string | undefined) =>
  session === undefined ? "theme=dark; lang=en-GB" : `theme=dark; ${session}; lang=en-GB`

const login: LoadRequest = { method: "POST", path: "/login", headers: {}, body: "" }

const me = (session: string | undefined, token: string | undefined): LoadRequest => ({
  method: "GET",
  path: "/api/me",
  headers: {
    cookie: withSession(session),
    ...(token === undefined ? {} : { authorization: `Bearer ${token}` })
  }
})

const createUser: LoadRequest = {
  method: "POST",
  path: "/users",
  headers: { "content-type": "application/json" },
  body: JSON.stringify(sampleUser)
}

const asset: LoadRequest = { method: "GET", path: `/assets/${STATIC_FILE}`, headers: {} }

/**
 * What the load sends per workload. The `stack` request has no `x-request-id`, so every server
 * generates one per request (the costlier branch), as behind a proxy that sets none.
 */
const fixedLoads: Record<Exclude<WorkloadName, "session+jwt">, LoadRequest> = {
  hello: { method: "GET", path: "/hello", headers: {} },
  stack: {
    method: "GET",
    path: "/api/users/42",
    headers: { authorization: `Bearer ${TOKEN}`, cookie: COOKIE }
  },
  json: {
    method: "POST",
    path: "/echo",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(sampleOrder)
  },
  "json-schema": createUser,
  static: asset
}

/**
 * The request the load repeats against a server that was just started. For `session+jwt` it logs in
 * once (`POST /login`, a fresh session with counter 1 in the server's memory store) and sends that
 * session's signed cookie with the valid JWT on every request.
 */
export const loadFor = async (
  base: string,
  workload: WorkloadName,
  fixtures: Fixtures
): Promise<LoadRequest> => {
  if (workload !== "session+jwt") return fixedLoads[workload]
  const answer = await send(base, login)
  const session = sessionCookieOf(answer)
  if (answer.status !== 200 || session === undefined) {
    throw new Error(`POST /login answered ${answer.status} without a ${SESSION_COOKIE} cookie`)
  }
  return me(session, fixtures.tokens.valid)
}

interface Answer {
  readonly status: number
  readonly headers: Record<string, string | Array<string> | undefined>
  /** The body as UTF-8 text. */
  readonly body: string
  readonly bytes: Buffer
}

const send = (base: string, req: LoadRequest): Promise<Answer> =>
  new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...req.headers }
    if (req.body !== undefined) headers["content-length"] = Buffer.byteLength(req.body)
    // A fresh connection per check (agent: false), closed after, so none lingers into the load.
    const r = request(
      `${base}${req.path}`,
      { method: req.method, headers, agent: false, timeout: 5_000 },
      (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (chunk: Buffer) => chunks.push(chunk))
        res.on("end", () => {
          const bytes = Buffer.concat(chunks)
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: bytes.toString("utf8"), bytes })
        })
        res.on("error", reject)
      }
    )
    r.on("timeout", () => r.destroy(new Error("no answer within 5 s")))
    r.on("error", reject)
    r.end(req.body)
  })

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** The request log line a `stack` request must produce. */
export interface ExpectedLog {
  readonly path: string
  readonly status: number
  readonly requestId: string
}

/**
 * What the checks of one server carry from one to the next: the fixtures, the session cookie that
 * `POST /login` set, and the ETag the file was served with.
 */
interface State {
  readonly fixtures: Fixtures
  session?: string
  etag?: string
}

interface Check {
  readonly name: string
  readonly request: LoadRequest | ((state: State) => LoadRequest)
  readonly expect: (answer: Answer, state: State) => void
  /** Whether the request goes through the logger middleware. */
  readonly logged: boolean
}

const header = (answer: Answer, name: string): string | undefined => {
  const value = answer.headers[name]
  return Array.isArray(value) ? value.join(", ") : value
}

const expectJson = (answer: Answer, status: number, body: unknown) => {
  deepStrictEqual(answer.status, status, "status")
  if (!(header(answer, "content-type") ?? "").includes("application/json")) {
    throw new Error(`content-type is ${header(answer, "content-type")}, not JSON`)
  }
  deepStrictEqual(JSON.parse(answer.body), body, "body")
}

const expectBadRequest = (answer: Answer) => {
  deepStrictEqual(answer.status, 400, "status")
  const body = JSON.parse(answer.body) as { error?: unknown; message?: unknown }
  deepStrictEqual(body.error, "BadRequest", "body.error")
  deepStrictEqual(typeof body.message, "string", "typeof body.message")
}

const expectUnauthorized = (answer: Answer, challenge = CHALLENGE) => {
  expectJson(answer, 401, { error: "Unauthorized", message: "Unauthorized" })
  deepStrictEqual(header(answer, "www-authenticate"), challenge, "www-authenticate")
}

const setCookies = (answer: Answer): ReadonlyArray<string> => {
  const value = answer.headers["set-cookie"]
  return value === undefined ? [] : Array.isArray(value) ? value : [value]
}

/** The `sid=…` pair of the answer's session cookie, if it set one (not one that clears it). */
const sessionCookieOf = (answer: Answer): string | undefined => {
  for (const cookie of setCookies(answer)) {
    const pair = cookie.split(";", 1)[0]!.trim()
    if (pair.startsWith(`${SESSION_COOKIE}=`) && pair.length > SESSION_COOKIE.length + 1) return pair
  }
  return undefined
}

const expectNoCookie = (answer: Answer) => {
  const cookies = setCookies(answer)
  if (cookies.length > 0) throw new Error(`set-cookie ${JSON.stringify(cookies)}: a read must not write`)
}

/** The session cookie `POST /login` set; the checks after it need it. */
const sessionOf = (state: State): string => {
  if (state.session === undefined) throw new Error("no session cookie: POST /login failed")
  return state.session
}

/** The session cookie with one character of its signature changed. */
const tampered = (session: string): string => {
  const dot = session.lastIndexOf(".")
  for (let i = session.length - 1; i > dot; i--) {
    const c = session[i]!
    if (/[A-Za-z0-9]/.test(c)) return `${session.slice(0, i)}${c === "a" ? "b" : "a"}${session.slice(i + 1)}`
  }
  throw new Error(`no signature to tamper with in ${session}`)
}

const expectCreated = (answer: Answer) => expectJson(answer, 201, sampleUser)

const expectUnsupportedMediaType = (answer: Answer) => {
  deepStrictEqual(answer.status, 415, "status")
  const body = JSON.parse(answer.body) as { error?: unknown }
  deepStrictEqual(body.error, "UnsupportedMediaType", "body.error")
}

const expectNotModified = (answer: Answer) => {
  deepStrictEqual(answer.status, 304, "status")
  deepStrictEqual(answer.bytes.length, 0, "body length")
}

/** A traversal attempt: refused (any 4xx), and the file beside the root never in the body. */
const expectRefused = (answer: Answer, state: State) => {
  if (answer.status < 400 || answer.status > 499) throw new Error(`status ${answer.status}, not a 4xx`)
  if (answer.body.includes(state.fixtures.static.secret)) throw new Error("served a file outside the root")
}

/** A `json-schema` request whose body is the sample with `change` applied to a copy. */
const userWith = (change: (user: Record<string, any>) => void): LoadRequest => {
  const user = structuredClone(sampleUser) as Record<string, any>
  change(user)
  return { ...createUser, body: JSON.stringify(user) }
}

const expectGeneratedId = (answer: Answer) => {
  const id = header(answer, REQUEST_ID_HEADER) ?? ""
  if (!UUID.test(id)) throw new Error(`x-request-id ${JSON.stringify(id)} is not a fresh UUID`)
}

const stack = fixedLoads.stack
const json = fixedLoads.json

const checks: Record<WorkloadName, ReadonlyArray<Check>> = {
  hello: [
    {
      name: "GET /hello",
      request: fixedLoads.hello,
      logged: false,
      expect: (a) => {
        deepStrictEqual(a.status, 200, "status")
        deepStrictEqual(a.body, "hello", "body")
      }
    }
  ],
  stack: [
    {
      name: "the load's request (no x-request-id)",
      request: stack,
      logged: true,
      expect: (a) => {
        expectJson(a, 200, userBody("42"))
        expectGeneratedId(a)
      }
    },
    {
      name: "a well-formed x-request-id is honoured",
      request: { ...stack, headers: { ...stack.headers, [REQUEST_ID_HEADER]: "check-abc.123" } },
      logged: true,
      expect: (a) => {
        expectJson(a, 200, userBody("42"))
        deepStrictEqual(header(a, REQUEST_ID_HEADER), "check-abc.123", "x-request-id")
      }
    },
    {
      name: "a malformed x-request-id is replaced",
      request: { ...stack, headers: { ...stack.headers, [REQUEST_ID_HEADER]: "<script> x" } },
      logged: true,
      expect: expectGeneratedId
    },
    {
      name: "no Authorization: 401 with a challenge and a request id",
      request: { ...stack, headers: { cookie: COOKIE, [REQUEST_ID_HEADER]: "check-401" } },
      logged: true,
      expect: (a) => {
        expectUnauthorized(a)
        deepStrictEqual(header(a, REQUEST_ID_HEADER), "check-401", "x-request-id")
      }
    },
    {
      name: "a wrong bearer token: 401",
      request: { ...stack, headers: { ...stack.headers, authorization: "Bearer not-the-token" } },
      logged: true,
      expect: (a) => expectUnauthorized(a)
    },
    {
      name: "another path parameter",
      request: { ...stack, path: "/api/users/ada" },
      logged: true,
      expect: (a) => expectJson(a, 200, userBody("ada"))
    }
  ],
  json: [
    {
      name: "the load's body is echoed",
      request: json,
      logged: false,
      expect: (a) => expectJson(a, 200, sampleOrder)
    },
    {
      name: "unknown keys are dropped",
      request: { ...json, body: JSON.stringify({ ...sampleOrder, extra: true }) },
      logged: false,
      expect: (a) => expectJson(a, 200, sampleOrder)
    },
    {
      name: "a fractional quantity: 400",
      request: {
        ...json,
        body: JSON.stringify({ ...sampleOrder, items: [{ sku: "x", quantity: 1.5, price: 1 }] })
      },
      logged: false,
      expect: expectBadRequest
    },
    {
      name: "a missing field: 400",
      request: { ...json, body: JSON.stringify({ ...sampleOrder, customer: { name: "x" } }) },
      logged: false,
      expect: expectBadRequest
    },
    {
      name: "a body that is not JSON: 400",
      request: { ...json, body: '{"id": "unterminated' },
      logged: false,
      expect: expectBadRequest
    }
  ],
  // In order: a login, a second login in the same session, then reads that must not change it.
  "session+jwt": [
    {
      name: "POST /login starts a session and sets its cookie",
      request: login,
      logged: false,
      expect: (a, state) => {
        expectJson(a, 200, loginBody(1))
        const session = sessionCookieOf(a)
        if (session === undefined) throw new Error(`no ${SESSION_COOKIE} cookie set`)
        const cookie = setCookies(a)
          .find((c) => c.startsWith(`${SESSION_COOKIE}=`))!
          .toLowerCase()
        for (const attribute of ["httponly", "path=/", "samesite=lax"]) {
          if (!cookie.split(/;\s*/).includes(attribute))
            throw new Error(`the cookie has no ${attribute}: ${cookie}`)
        }
        if (!cookie.includes("max-age=") && !cookie.includes("expires="))
          throw new Error("the cookie never expires")
        state.session = session
      }
    },
    {
      name: "POST /login again in the same session: counter 2",
      request: (state) => ({ ...login, headers: { cookie: withSession(sessionOf(state)) } }),
      logged: false,
      expect: (a) => expectJson(a, 200, loginBody(2))
    },
    {
      name: "GET /api/me: the JWT's subject, the session's counter, no cookie written",
      request: (state) => me(sessionOf(state), state.fixtures.tokens.valid),
      logged: false,
      expect: (a) => {
        expectJson(a, 200, meBody(JWT_SUBJECT, 2))
        expectNoCookie(a)
      }
    },
    {
      name: "GET /api/me again: unchanged",
      request: (state) => me(sessionOf(state), state.fixtures.tokens.valid),
      logged: false,
      expect: (a) => {
        expectJson(a, 200, meBody(JWT_SUBJECT, 2))
        expectNoCookie(a)
      }
    },
    {
      name: "no session cookie: counter 0, and no session is started",
      request: (state) => me(undefined, state.fixtures.tokens.valid),
      logged: false,
      expect: (a) => {
        expectJson(a, 200, meBody(JWT_SUBJECT, 0))
        expectNoCookie(a)
      }
    },
    {
      name: "a tampered session cookie is no session: counter 0",
      request: (state) => me(tampered(sessionOf(state)), state.fixtures.tokens.valid),
      logged: false,
      expect: (a) => expectJson(a, 200, meBody(JWT_SUBJECT, 0))
    },
    {
      name: "no Authorization: 401 with a challenge",
      request: (state) => me(sessionOf(state), undefined),
      logged: false,
      expect: (a) => expectUnauthorized(a)
    },
    {
      name: "an expired JWT: 401 invalid_token",
      request: (state) => me(sessionOf(state), state.fixtures.tokens.expired),
      logged: false,
      expect: (a) => expectUnauthorized(a, INVALID_TOKEN_CHALLENGE)
    },
    {
      name: "a JWT signed with HS512 (not allowed): 401 invalid_token",
      request: (state) => me(sessionOf(state), state.fixtures.tokens.otherAlgorithm),
      logged: false,
      expect: (a) => expectUnauthorized(a, INVALID_TOKEN_CHALLENGE)
    },
    {
      name: "an unsigned JWT (alg none): 401 invalid_token",
      request: (state) => me(sessionOf(state), state.fixtures.tokens.unsigned),
      logged: false,
      expect: (a) => expectUnauthorized(a, INVALID_TOKEN_CHALLENGE)
    },
    {
      name: "a JWT with a bad signature: 401 invalid_token",
      request: (state) => me(sessionOf(state), state.fixtures.tokens.badSignature),
      logged: false,
      expect: (a) => expectUnauthorized(a, INVALID_TOKEN_CHALLENGE)
    },
    {
      name: "a JWT without exp: 401 invalid_token",
      request: (state) => me(sessionOf(state), state.fixtures.tokens.noExp),
      logged: false,
      expect: (a) => expectUnauthorized(a, INVALID_TOKEN_CHALLENGE)
    }
  ],
  "json-schema": [
    { name: "the load's body: 201 with it", request: createUser, logged: false, expect: expectCreated },
    {
      name: "unknown keys, top-level and nested, are dropped",
      request: userWith((u) => {
        u["admin"] = true
        u["profile"].address.extra = "x"
        u["devices"][0].extra = 1
      }),
      logged: false,
      expect: expectCreated
    },
    {
      name: "a username too short: 400",
      request: userWith((u) => (u["username"] = "ab")),
      logged: false,
      expect: expectBadRequest
    },
    {
      name: "a bio too long: 400",
      request: userWith((u) => (u["profile"].bio = "x".repeat(281))),
      logged: false,
      expect: expectBadRequest
    },
    {
      name: "an age above the bound: 400",
      request: userWith((u) => (u["age"] = 131)),
      logged: false,
      expect: expectBadRequest
    },
    {
      name: "a fractional age: 400",
      request: userWith((u) => (u["age"] = 36.5)),
      logged: false,
      expect: expectBadRequest
    },
    {
      name: "a score above the bound: 400",
      request: userWith((u) => (u["score"] = 100.5)),
      logged: false,
      expect: expectBadRequest
    },
    {
      name: "a 3-letter country in the nested address: 400",
      request: userWith((u) => (u["profile"].address.country = "GBR")),
      logged: false,
      expect: expectBadRequest
    },
    {
      name: "a missing nested field: 400",
      request: userWith((u) => delete u["profile"].address.city),
      logged: false,
      expect: expectBadRequest
    },
    {
      name: "a device with an unknown platform: 400",
      request: userWith((u) => (u["devices"][2].platform = "windows")),
      logged: false,
      expect: expectBadRequest
    },
    {
      name: "no devices: 400",
      request: userWith((u) => (u["devices"] = [])),
      logged: false,
      expect: expectBadRequest
    },
    {
      name: "11 devices: 400",
      request: userWith((u) => (u["devices"] = Array.from({ length: 11 }, () => u["devices"][0]))),
      logged: false,
      expect: expectBadRequest
    },
    {
      name: "a body that is not JSON: 400",
      request: { ...createUser, body: '{"username": "unterminated' },
      logged: false,
      expect: expectBadRequest
    },
    {
      // Not text/plain: Fastify parses that by default, and then its schema answers 400.
      name: "a body sent as a form (application/x-www-form-urlencoded): 415",
      request: { ...createUser, headers: { "content-type": "application/x-www-form-urlencoded" } },
      logged: false,
      expect: expectUnsupportedMediaType
    }
  ],
  static: [
    {
      name: "GET the file: its bytes, length, type, validators and cache policy",
      request: asset,
      logged: false,
      expect: (a, state) => {
        deepStrictEqual(a.status, 200, "status")
        if (!a.bytes.equals(state.fixtures.static.bytes))
          throw new Error(`body is not the file (${a.bytes.length} bytes)`)
        deepStrictEqual(header(a, "content-length"), String(STATIC_SIZE), "content-length")
        deepStrictEqual(header(a, "content-type"), "application/octet-stream", "content-type")
        deepStrictEqual(header(a, "last-modified"), state.fixtures.static.lastModified, "last-modified")
        deepStrictEqual(header(a, "cache-control"), STATIC_CACHE_CONTROL, "cache-control")
        const etag = header(a, "etag")
        if (etag === undefined || !/^(W\/)?"[^"]+"$/.test(etag)) throw new Error(`etag ${etag}`)
        state.etag = etag
      }
    },
    {
      name: "If-None-Match with its ETag: 304",
      request: (state) => ({ ...asset, headers: { "if-none-match": state.etag! } }),
      logged: false,
      expect: expectNotModified
    },
    {
      name: "If-Modified-Since its Last-Modified: 304",
      request: (state) => ({
        ...asset,
        headers: { "if-modified-since": state.fixtures.static.lastModified }
      }),
      logged: false,
      expect: expectNotModified
    },
    {
      name: "If-None-Match with another ETag: 200",
      request: { ...asset, headers: { "if-none-match": '"stale-0"' } },
      logged: false,
      expect: (a, state) => {
        deepStrictEqual(a.status, 200, "status")
        if (!a.bytes.equals(state.fixtures.static.bytes)) throw new Error("body is not the file")
      }
    },
    {
      name: "HEAD: the headers, no body",
      request: { ...asset, method: "HEAD" },
      logged: false,
      expect: (a) => {
        deepStrictEqual(a.status, 200, "status")
        deepStrictEqual(header(a, "content-length"), String(STATIC_SIZE), "content-length")
        deepStrictEqual(a.bytes.length, 0, "body length")
      }
    },
    {
      name: "a file that is not there: 404",
      request: { ...asset, path: "/assets/absent.bin" },
      logged: false,
      expect: (a) => deepStrictEqual(a.status, 404, "status")
    },
    {
      name: "../ out of the root: refused",
      request: { ...asset, path: "/assets/../secret.txt" },
      logged: false,
      expect: expectRefused
    },
    {
      name: "%2e%2e%2f out of the root: refused",
      request: { ...asset, path: "/assets/%2e%2e%2fsecret.txt" },
      logged: false,
      expect: expectRefused
    }
  ]
}

/**
 * Runs the checks of the given workloads in order. Returns the failures (empty when all pass) and
 * the log lines the logged requests must have produced, in order.
 */
export const verify = async (
  base: string,
  workloads: ReadonlyArray<WorkloadName>,
  fixtures: Fixtures
): Promise<{
  readonly failures: ReadonlyArray<string>
  readonly expectedLogs: ReadonlyArray<ExpectedLog>
}> => {
  const failures: Array<string> = []
  const expectedLogs: Array<ExpectedLog> = []
  for (const workload of workloads) {
    const state: State = { fixtures }
    for (const check of checks[workload]) {
      try {
        const req = typeof check.request === "function" ? check.request(state) : check.request
        const answer = await send(base, req)
        check.expect(answer, state)
        if (check.logged) {
          expectedLogs.push({
            path: req.path,
            status: answer.status,
            requestId: header(answer, REQUEST_ID_HEADER) ?? ""
          })
        }
      } catch (error) {
        failures.push(`${workload}: ${check.name}: ${error instanceof Error ? error.message : String(error)}`)
      }
    }
  }
  return { failures, expectedLogs }
}

/**
 * Checks the request log a server wrote to stderr: exactly one JSON line per logged request, with
 * method, path, status, a duration and the request id, and none for the routes without a logger.
 */
export const verifyLogs = (stderr: string, expected: ReadonlyArray<ExpectedLog>): ReadonlyArray<string> => {
  const lines: Array<Record<string, unknown>> = []
  for (const text of stderr.split("\n")) {
    if (!text.startsWith("{")) continue
    try {
      const line = JSON.parse(text) as { message?: unknown; annotations?: Record<string, unknown> }
      if (line.message === "request" && line.annotations !== undefined) lines.push(line.annotations)
    } catch {
      // Not a log line of ours (a framework's own output): ignored.
    }
  }
  if (lines.length !== expected.length) {
    return [`log: ${lines.length} request lines for ${expected.length} logged requests`]
  }
  const failures: Array<string> = []
  expected.forEach((want, i) => {
    const got = lines[i]!
    const same =
      got["http.method"] === "GET" &&
      got["http.path"] === want.path &&
      got["http.status"] === want.status &&
      got["requestId"] === want.requestId &&
      typeof got["durationMs"] === "number"
    if (!same) failures.push(`log: line ${i + 1} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`)
  })
  return failures
}
