/**
 * Testing a whole app in-process: a `client` with typed request builders, arbitraries of valid
 * requests to a route (`requests`) and of hostile ones (`hostile`), and `neverFails`, the property
 * that no request makes the app answer 5xx or hang. Imported by path (`@strata/core/Testing`)
 * because it needs the optional `fast-check` peer.
 *
 * @since 0.1.0
 */
import type * as Layer from "effect/Layer"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import * as fc from "fast-check"
import * as App from "./App.ts"
import * as Arbitraries from "./Arbitraries.ts"
import type * as Property from "./Property.ts"
import { parametersOf } from "./Property.ts"
import * as Router from "./Router.ts"

// ---------------------------------------------------------------------------------------------------
// Requests as data
// ---------------------------------------------------------------------------------------------------

/**
 * A request as plain data, so fast-check can print and shrink it and it can be sent many times
 * (a web `Request`'s body can be read once). `path` is the path and query exactly as sent.
 *
 * @category models
 */
export interface TestRequest {
  readonly method: string
  readonly path: string
  readonly headers: Readonly<Record<string, string>>
  readonly body?: string | Uint8Array | undefined
  /** `"valid"`, or which hostile family it belongs to (`"truncated-json"`, …). */
  readonly kind: string
}

/**
 * A valid request to a route, with what the handler will decode from it.
 *
 * @category models
 */
export interface ValidRequest<B = unknown, Q = unknown> extends TestRequest {
  /** The route it targets, as `METHOD /path` with the route's parameters (`POST /api/notes`). */
  readonly route: string
  /** The path parameters, before percent-encoding. */
  readonly params: Readonly<Record<string, string>>
  /** The query, decoded by its Schema (undefined without one). */
  readonly query: Q
  /** The JSON body, decoded by its Schema (undefined without one). */
  readonly input: B
}

const shorten = (text: string, max: number) =>
  text.length <= max ? text : `${text.slice(0, max)}… (${text.length} characters)`

const describeBody = (body: string | Uint8Array): string =>
  typeof body === "string"
    ? `body ${JSON.stringify(shorten(body, 300))}`
    : `body bytes [${[...body.subarray(0, 48)].map((b) => b.toString(16).padStart(2, "0")).join(" ")}${body.length > 48 ? ` … ${body.length} bytes` : ""}]`

/**
 * How a request is printed in failure reports: method, path, headers and the start of the body.
 *
 * @category models
 */
export const format = (request: TestRequest): string => {
  const headers = Object.entries(request.headers)
    .map(([name, value]) => `${name}: ${JSON.stringify(shorten(value, 120))}`)
    .join(", ")
  return [
    `${request.method} ${shorten(request.path, 300)}`,
    headers === "" ? undefined : `{ ${headers} }`,
    request.body === undefined ? undefined : describeBody(request.body),
    `(${request.kind})`
  ]
    .filter((part) => part !== undefined)
    .join(" ")
}

const makeRequest = <R extends TestRequest>(fields: R): R => {
  // fast-check prints a counterexample with this method.
  Object.defineProperty(fields, fc.toStringMethod, { value: () => format(fields), enumerable: false })
  return fields
}

const withoutBody = new Set(["GET", "HEAD"])

/**
 * The web `Request` for a test request. GET and HEAD carry no body (the Fetch API refuses one).
 *
 * @category constructors
 */
export const toRequest = (request: TestRequest, base = "http://test"): Request =>
  new Request(`${base}${request.path}`, {
    method: request.method,
    headers: request.headers,
    ...(request.body === undefined || withoutBody.has(request.method.toUpperCase())
      ? {}
      : { body: request.body as BodyInit })
  })

// ---------------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------------

/**
 * A response read whole, so its body can be looked at many times.
 *
 * @category models
 */
export interface TestResponse {
  readonly status: number
  readonly headers: Headers
  readonly bytes: Uint8Array
  /** The body as text (UTF-8). */
  text(): string
  /** The body parsed as JSON; with a Schema, decoded by it (throws on a mismatch). */
  json<S extends Schema.ConstraintDecoder<unknown>>(schema: S): S["Type"]
  json<A = unknown>(): A
}

const readResponse = async (response: Response): Promise<TestResponse> => {
  const bytes = new Uint8Array(await response.arrayBuffer())
  const text = () => new TextDecoder().decode(bytes)
  return {
    status: response.status,
    headers: response.headers,
    bytes,
    text,
    json: (schema?: Schema.ConstraintDecoder<unknown>) => {
      const parsed: unknown = JSON.parse(text())
      return schema === undefined
        ? parsed
        : Schema.decodeUnknownSync(schema as unknown as Schema.Decoder<unknown>)(parsed)
    }
  } as TestResponse
}

type Form = Readonly<Record<string, string | ReadonlyArray<string>>> | URLSearchParams

/**
 * What every request may carry: headers, cookies and a query.
 *
 * @category models
 */
export interface RequestOptions {
  readonly headers?: Readonly<Record<string, string>> | undefined
  readonly cookies?: Readonly<Record<string, string>> | undefined
  readonly query?: Readonly<Record<string, string | number | boolean | ReadonlyArray<string>>> | undefined
}

/**
 * At most one body: `json` (sets `content-type: application/json`), `form` (urlencoded), `text`
 * (`text/plain`) or a raw `body` with your own `content-type`.
 *
 * @category models
 */
export type Payload =
  | { readonly json: unknown; readonly form?: never; readonly text?: never; readonly body?: never }
  | { readonly form: Form; readonly json?: never; readonly text?: never; readonly body?: never }
  | { readonly text: string; readonly json?: never; readonly form?: never; readonly body?: never }
  | { readonly body: BodyInit; readonly json?: never; readonly form?: never; readonly text?: never }
  | { readonly json?: never; readonly form?: never; readonly text?: never; readonly body?: never }

/**
 * Options of a request with a body.
 *
 * @category models
 */
export type SendOptions = RequestOptions & Payload

type Fill<P extends string> = P extends `${infer Head}:${string}/${infer Rest}`
  ? `${Head}${string}/${Fill<Rest>}`
  : P extends `${infer Head}:${string}`
    ? `${Head}${string}`
    : P extends `${infer Head}*`
      ? `${Head}${string}`
      : P

/**
 * The paths of the app's routes for a method, parameters as `${string}`: what the client's
 * builders suggest (any string is accepted, to test misses).
 *
 * @category models
 */
export type PathOf<G extends Router.Any, M extends string> =
  Router.RouteId<G> extends infer Id ? (Id extends `${M | "*"} ${infer P}` ? Fill<P> : never) : never

type PathArg<G extends Router.Any, M extends string> = PathOf<G, M> | (string & {})

/**
 * An in-process client of an app: each builder sends one request and reads the whole response.
 *
 * @category models
 */
export interface Client<G extends Router.Any> {
  /** The app's web handler. */
  readonly handler: (request: Request) => Promise<Response>
  readonly get: (path: PathArg<G, "GET">, options?: RequestOptions) => Promise<TestResponse>
  readonly head: (path: PathArg<G, "GET" | "HEAD">, options?: RequestOptions) => Promise<TestResponse>
  readonly delete: (path: PathArg<G, "DELETE">, options?: RequestOptions) => Promise<TestResponse>
  readonly options: (path: PathArg<G, "OPTIONS">, options?: RequestOptions) => Promise<TestResponse>
  readonly post: (path: PathArg<G, "POST">, options?: SendOptions) => Promise<TestResponse>
  readonly put: (path: PathArg<G, "PUT">, options?: SendOptions) => Promise<TestResponse>
  readonly patch: (path: PathArg<G, "PATCH">, options?: SendOptions) => Promise<TestResponse>
  /** Any method. */
  readonly request: (method: string, path: string, options?: SendOptions) => Promise<TestResponse>
  /** A `TestRequest` (from `requests` or `hostile`) or a web `Request`. */
  readonly send: (request: TestRequest | Request) => Promise<TestResponse>
  /** Stops the app (its layer's finalizers run). */
  readonly dispose: () => Promise<void>
  readonly [Symbol.asyncDispose]: () => Promise<void>
}

const buildRequest =
  (base: string, defaults: Readonly<Record<string, string>>) =>
  (method: string, path: string, options: SendOptions = {}): Request => {
    const url = new URL(`${base}${path}`)
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (Array.isArray(value)) for (const item of value) url.searchParams.append(key, item)
      else url.searchParams.append(key, String(value))
    }
    const headers = new Headers(defaults)
    const cookies = Object.entries(options.cookies ?? {})
    if (cookies.length > 0) {
      headers.set("cookie", cookies.map(([name, value]) => `${name}=${encodeURIComponent(value)}`).join("; "))
    }
    let body: BodyInit | undefined
    if (options.json !== undefined) {
      body = JSON.stringify(options.json)
      headers.set("content-type", "application/json")
    } else if (options.form !== undefined) {
      const form = options.form instanceof URLSearchParams ? options.form : new URLSearchParams()
      if (!(options.form instanceof URLSearchParams)) {
        for (const [key, value] of Object.entries(options.form)) {
          if (typeof value === "string") form.append(key, value)
          else for (const item of value) form.append(key, item)
        }
      }
      body = form
    } else if (options.text !== undefined) {
      body = options.text
      headers.set("content-type", "text/plain; charset=utf-8")
    } else if (options.body !== undefined) {
      body = options.body
    }
    for (const [name, value] of Object.entries(options.headers ?? {})) headers.set(name, value)
    return new Request(url, { method, headers, ...(body === undefined ? {} : { body }) })
  }

/**
 * An in-process client of the app with `services` as its app layer: no socket, each request goes
 * through the app's middleware and routes as it would when served.
 *
 * @example
 * ```ts
 * const client = Testing.client(app, Notes.layerMemory, { headers: { authorization: "Bearer bob-token" } })
 * const created = await client.post("/api/notes", { json: { title: "t", body: "b" } })
 * expect(created.status).toBe(201)
 * expect(created.json<{ id: string }>().id).toBeTruthy()
 * await client.dispose()
 * ```
 * @category constructors
 */
export const client = <G extends Router.Any, LE = never>(
  app: G & App.ServeCheck<G>,
  services: Layer.Layer<App.Services<G>, LE, never>,
  options?: {
    /** Headers sent with every request (credentials, …); a request's own headers win. */
    readonly headers?: Readonly<Record<string, string>> | undefined
    /** The origin requests are addressed to; default `http://test`. */
    readonly baseUrl?: string | undefined
  }
): Client<G> => {
  const { handler, dispose } = App.toWebHandler(app, services)
  const make = buildRequest(options?.baseUrl ?? "http://test", options?.headers ?? {})
  const request = async (method: string, path: string, init?: SendOptions) =>
    readResponse(await handler(make(method, path, init)))
  return {
    handler,
    get: (path, init) => request("GET", path, init as SendOptions),
    head: (path, init) => request("HEAD", path, init as SendOptions),
    delete: (path, init) => request("DELETE", path, init as SendOptions),
    options: (path, init) => request("OPTIONS", path, init as SendOptions),
    post: (path, init) => request("POST", path, init),
    put: (path, init) => request("PUT", path, init),
    patch: (path, init) => request("PATCH", path, init),
    request,
    send: async (input) =>
      readResponse(
        await handler(
          input instanceof Request
            ? input
            : toRequest(withDefaults(input, options?.headers ?? {}), options?.baseUrl)
        )
      ),
    dispose,
    [Symbol.asyncDispose]: dispose
  }
}

const withDefaults = (request: TestRequest, defaults: Readonly<Record<string, string>>): TestRequest => {
  const own = new Set(Object.keys(request.headers).map((name) => name.toLowerCase()))
  const extra = Object.entries(defaults).filter(([name]) => !own.has(name.toLowerCase()))
  return extra.length === 0
    ? request
    : { ...request, headers: { ...Object.fromEntries(extra), ...request.headers } }
}

// ---------------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------------

interface Target {
  readonly method: string
  readonly path: string
  readonly id: string
}

const targetsOf = (app: Router.Any, route: string | undefined): ReadonlyArray<Target> => {
  const all = Router.manifest(app).map((r) => ({
    method: r.method === "*" ? "GET" : r.method,
    path: r.path,
    id: `${r.method} ${r.path}`
  }))
  if (route === undefined) return all
  const found = all.filter((t) => t.id === route)
  if (found.length === 0) {
    throw new Error(`No route ${route} in the app; its routes are: ${all.map((t) => t.id).join(", ")}`)
  }
  return found
}

type Segment =
  | { readonly _tag: "Static"; readonly text: string }
  | { readonly _tag: "Param"; readonly name: string; readonly optional: boolean }
  | { readonly _tag: "Wildcard" }

const parsePath = (path: string): ReadonlyArray<Segment> =>
  path
    .split("/")
    .slice(1)
    .map((part): Segment => {
      if (part === "*") return { _tag: "Wildcard" }
      if (part.startsWith(":")) {
        const optional = part.endsWith("?")
        return { _tag: "Param", name: part.slice(1, optional ? -1 : undefined), optional }
      }
      return { _tag: "Static", text: part }
    })

// URL parsing resolves `.` and `..` segments before the router sees them.
const notDotSegment = (value: string) => value !== "." && value !== ".."

const defaultParam = fc.string({ unit: "grapheme", minLength: 1, maxLength: 16 }).filter(notDotSegment)

/**
 * Path parameters filled in by arbitraries, then percent-encoded: the path and the raw values.
 */
const pathArbitrary = (
  path: string,
  params: Readonly<Record<string, fc.Arbitrary<string>>>,
  encode: (value: string) => string = encodeURIComponent
): fc.Arbitrary<{ readonly path: string; readonly params: Readonly<Record<string, string>> }> => {
  const parts = parsePath(path).map((segment) => {
    switch (segment._tag) {
      case "Static":
        return fc.constant({ text: segment.text as string | undefined, param: undefined })
      case "Wildcard":
        return fc
          .array(defaultParam.map(encode), { maxLength: 3 })
          .map((items) => ({ text: items.join("/") as string | undefined, param: undefined }))
      case "Param": {
        const value = params[segment.name] ?? defaultParam
        const present = value.map((raw) => ({
          text: encode(raw) as string | undefined,
          param: [segment.name, raw] as const
        }))
        return segment.optional
          ? fc.oneof(present, fc.constant({ text: undefined, param: undefined }))
          : present
      }
    }
  })
  return fc.tuple(...parts).map((filled) => ({
    path: `/${filled.flatMap((part) => (part.text === undefined ? [] : [part.text])).join("/")}`,
    params: Object.fromEntries(filled.flatMap((part) => (part.param === undefined ? [] : [part.param])))
  }))
}

const queryString = (encoded: unknown): string => {
  if (typeof encoded !== "object" || encoded === null) return ""
  const search = new URLSearchParams()
  for (const [key, value] of Object.entries(encoded)) {
    if (value === undefined) continue
    if (Array.isArray(value)) for (const item of value) search.append(key, String(item))
    else search.append(key, String(value))
  }
  const text = search.toString()
  return text === "" ? "" : `?${text}`
}

const attempts = 100

// A value as the server gets it: encoded, sent as JSON, parsed and decoded again.
const jsonRoundTrip = <S extends Schema.ConstraintCodec<unknown, unknown, never, never>>(
  schema: S
): fc.Arbitrary<{ readonly json: string; readonly value: S["Type"] }> => {
  const decode = Schema.decodeUnknownExit(schema as unknown as Schema.Codec<unknown, unknown>)
  return Arbitraries.filterMap(
    Arbitraries.arbitraryEncoded(schema),
    (encoded) => {
      let json: string | undefined
      try {
        json = JSON.stringify(encoded)
      } catch {
        return undefined
      }
      if (json === undefined) return undefined
      const exit = decode(JSON.parse(json))
      return Exit.isSuccess(exit) ? { value: { json, value: exit.value } } : undefined
    },
    attempts,
    () =>
      new Error("Testing.requests: the body Schema's values do not survive JSON (NaN, Infinity, bigint, …)")
  )
}

// ---------------------------------------------------------------------------------------------------
// Valid requests
// ---------------------------------------------------------------------------------------------------

type Codec = Schema.ConstraintCodec<unknown, unknown, never, never>
type TypeOf<S> = [S] extends [never] ? undefined : S extends Codec ? S["Type"] : undefined

/**
 * Options of `requests`.
 *
 * @category models
 */
export interface RequestsOptions<Id extends string, B extends Codec, Q extends Codec> {
  /** The route, as `METHOD /path` (`"POST /api/notes"`); by default any route of the app. */
  readonly route?: Id | undefined
  /** Generators of path parameters, by name; by default non-empty Unicode strings. */
  readonly params?: Readonly<Record<string, fc.Arbitrary<string>>> | undefined
  /** The JSON body's Schema: bodies are its values, encoded, sent as JSON. */
  readonly body?: B | undefined
  /** The query's Schema: its encoded values become the query string (arrays repeat the key). */
  readonly query?: Q | undefined
  /** Headers of every request (credentials, …), or an arbitrary of them. */
  readonly headers?:
    Readonly<Record<string, string>> | fc.Arbitrary<Readonly<Record<string, string>>> | undefined
}

/**
 * An arbitrary of valid requests to a route: path parameters filled in, a query from its Schema,
 * a JSON body from its Schema (through `Arbitraries`), and the headers you give. Each request
 * carries the values the handler will decode (`input`, `query`, `params`).
 *
 * @example
 * ```ts
 * const creates = Testing.requests(app, { route: "POST /api/notes", body: NoteInput, headers: { authorization: "Bearer bob-token" } })
 * ```
 * @category constructors
 */
export const requests = <G extends Router.Any, B extends Codec = never, Q extends Codec = never>(
  app: G,
  options: RequestsOptions<Router.RouteId<G>, B, Q> = {}
): fc.Arbitrary<ValidRequest<TypeOf<B>, TypeOf<Q>>> => {
  const targets = targetsOf(app, options.route)
  if (targets.length === 0) throw new Error("Testing.requests: the app has no routes")
  const headersArb =
    options.headers === undefined
      ? fc.constant({})
      : options.headers instanceof fc.Arbitrary
        ? options.headers
        : fc.constant(options.headers)
  const bodyArb = options.body === undefined ? fc.constant(undefined) : jsonRoundTrip(options.body)
  const queryArb =
    options.query === undefined
      ? fc.constant(undefined)
      : Arbitraries.arbitraryEncoded(options.query).map((encoded) => ({
          search: queryString(encoded),
          value: Schema.decodeUnknownSync(options.query as unknown as Schema.Codec<unknown, unknown>)(encoded)
        }))
  const perTarget = targets.map((target) =>
    fc
      .record({
        path: pathArbitrary(target.path, options.params ?? {}),
        headers: headersArb as fc.Arbitrary<Readonly<Record<string, string>>>,
        body: bodyArb,
        query: queryArb
      })
      .map(({ path, headers, body, query }) => {
        const hasBody = body !== undefined && !withoutBody.has(target.method)
        return makeRequest({
          method: target.method,
          path: `${path.path}${query?.search ?? ""}`,
          headers: hasBody ? { ...headers, "content-type": "application/json" } : { ...headers },
          ...(hasBody ? { body: body.json } : {}),
          kind: "valid",
          route: target.id,
          params: path.params,
          query: query?.value as TypeOf<Q>,
          input: (hasBody ? body.value : undefined) as TypeOf<B>
        })
      })
  )
  return perTarget.length === 1 ? perTarget[0]! : fc.oneof(...perTarget)
}

// ---------------------------------------------------------------------------------------------------
// Hostile requests
// ---------------------------------------------------------------------------------------------------

/**
 * The families of hostile requests.
 *
 * @category models
 */
export type HostileKind =
  | "malformed-json"
  | "truncated-json"
  | "oversized-body"
  | "lying-content-length"
  | "wrong-content-type"
  | "odd-headers"
  | "odd-cookies"
  | "bad-percent-encoding"
  | "nul-bytes"
  | "unicode"
  | "path-traversal"
  | "wrong-method"
  | "odd-query"

/**
 * Every hostile family, in the order `hostile` draws from them.
 *
 * @category models
 */
export const hostileKinds: ReadonlyArray<HostileKind> = [
  "malformed-json",
  "truncated-json",
  "oversized-body",
  "lying-content-length",
  "wrong-content-type",
  "odd-headers",
  "odd-cookies",
  "bad-percent-encoding",
  "nul-bytes",
  "unicode",
  "path-traversal",
  "wrong-method",
  "odd-query"
]

const bodyKinds: ReadonlySet<HostileKind> = new Set([
  "malformed-json",
  "truncated-json",
  "oversized-body",
  "lying-content-length",
  "wrong-content-type"
])

/**
 * Options of `hostile`.
 *
 * @category models
 */
export interface HostileOptions<Id extends string> {
  /** The route to attack, as `METHOD /path`; by default every route of the app. */
  readonly route?: Id | undefined
  /**
   * Headers of every request, such as valid credentials, so the hostile part reaches the handler
   * rather than stopping at authentication. A family that attacks a header replaces it.
   */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** The route's JSON body Schema: valid bodies to truncate and mislabel; by default any JSON. */
  readonly body?: Codec | undefined
  /** The families to draw from; by default all. */
  readonly kinds?: ReadonlyArray<HostileKind> | undefined
  /** Bytes of an oversized body; default 1 MiB + 1 (one past `Body`'s default limit). */
  readonly oversize?: number | undefined
}

// A header value the Fetch API accepts: bytes (Latin-1 code units), no NUL, CR or LF. Text beyond
// Latin-1 is sent as its UTF-8 bytes, as a raw client would.
const headerSafe = (value: string): string => {
  const bytes = [...value].some((ch) => ch.codePointAt(0)! > 0xff)
    ? String.fromCharCode(...new TextEncoder().encode(value))
    : value
  return bytes.replace(/[\0\r\n]/g, "")
}

const latin1Unit = fc
  .integer({ min: 1, max: 0xff })
  .filter((code) => code !== 0x0a && code !== 0x0d)
  .map((code) => String.fromCharCode(code))

const unicodeEdges = [
  "😀",
  "e\u0301",
  "\u00e9",
  "A\u030a",
  "\u202e",
  "\u200b",
  "\ufeff",
  "\ufb00",
  "\u0130",
  "\u{10ffff}",
  "\ud800",
  "\udc00",
  "\u0000",
  "\u2028",
  "ß",
  "İ",
  "ǅ"
]

const malformedJson = [
  "",
  " ",
  "{",
  "}",
  "[",
  '{"a":',
  '{"a":1,}',
  "[1,2,]",
  "{'a':1}",
  "{a:1}",
  "NaN",
  "undefined",
  "Infinity",
  "-",
  "01",
  "1e99999",
  '"\\u12"',
  '"\\x41"',
  '{"a":1}}',
  "[]]",
  "nul",
  "tru",
  '{"__proto__":{"polluted":true}}',
  '{"constructor":{"prototype":{"polluted":true}}}',
  '{"a":1,"a":2}',
  "\ufeff{}",
  '{"a":"\\ud800"}',
  "/* comment */ {}",
  "{} {}",
  "123abc",
  '"unterminated',
  "null",
  "true",
  "[]",
  '"a string"',
  "-0",
  "1e308",
  "123456789012345678901234567890"
]

const contentTypes = [
  "text/plain",
  "application/xml",
  "application/x-www-form-urlencoded",
  "multipart/form-data",
  "multipart/form-data; boundary=",
  "multipart/form-data; boundary=xyz",
  "application/json; charset=utf-16",
  "application/json; charset=nonsense",
  "application/json;;;",
  "application/jsonx",
  "json",
  "*/*",
  "application/*",
  "text/html, application/json",
  "APPLICATION/JSON",
  "application/json\t; charset=utf-8",
  "application/octet-stream",
  "image/png"
]

const badPercent = [
  "%",
  "%%",
  "%2",
  "%zz",
  "%G0",
  "%E0%A4%A",
  "%C0%AF",
  "%C0%80",
  "%ED%A0%80",
  "%FF%FE",
  "%F4%90%80%80",
  "%u0041",
  "%25%",
  "%%32%65"
]

const traversalPaths = [
  "/..%2f..%2fetc%2fpasswd",
  "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
  "/..%5c..%5cwindows%5cwin.ini",
  "/....//....//etc/passwd",
  "/%252e%252e%252fetc%252fpasswd",
  "//etc/passwd",
  "/;/../etc/passwd",
  "/a/..;/b",
  "/.%2e/.%2e/etc/passwd",
  "/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
  "/..%00/etc/passwd",
  "/\\..\\..\\etc\\passwd",
  "/%2f%2f%2fetc"
]

const traversalValues = [
  "../../etc/passwd",
  "..\\..\\windows\\win.ini",
  "..",
  "../",
  "....//",
  "/etc/passwd",
  "%2e%2e%2f",
  "..%00",
  "C:\\Windows",
  "\\\\server\\share"
]

const methods = [
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "PATCH",
  "DELETE",
  "OPTIONS",
  "PROPFIND",
  "PURGE",
  "MKCOL",
  "X-CUSTOM"
]

const oddHeaderValues: Readonly<Record<string, ReadonlyArray<string>>> = {
  authorization: [
    "",
    "Bearer",
    "Bearer ",
    "Bearer  x",
    "bearer x",
    "Basic",
    "Basic !!!!",
    "Basic Og==",
    "Basic YQ==",
    "Digest x",
    "Bearer \u00ff",
    `Bearer ${"a".repeat(10_000)}`,
    "Bearer a.b.c",
    "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."
  ],
  accept: ["*/*;q=abc", "application/json;q=2", "text/*, */*;q=0", ",,,", ""],
  "accept-encoding": ["gzip;q=nan", "br;q=-1, *;q=2", ",,,", "*;q=0", "identity;q=0"],
  range: [
    "bytes=",
    "bytes=-",
    "bytes=999999999999999999999-",
    "bytes=5-1",
    "items=0-1",
    "bytes=0-1,".repeat(500)
  ],
  "if-none-match": ["*", '"', "W/", 'W/"x", garbage', ""],
  "if-modified-since": ["yesterday", "Thu, 01 Jan 1970 00:00:00 GMT", "9999-99-99", "-1"],
  "x-forwarded-for": [
    "1.2.3.4, garbage",
    "::ffff:",
    "999.999.999.999",
    ",,,",
    "unknown",
    "1.2.3.4".repeat(1000)
  ],
  "x-forwarded-proto": ["gopher", "", "https, http"],
  forwarded: ["for=", 'for="[::1]:x"; proto=gopher', ";;;"],
  origin: ["null", "http://evil.example", "file://", ""],
  "x-request-id": ["<script>", "a".repeat(1000), "\u0001\u0002", " "],
  "content-type": ["", ";", "application/json; boundary", "a/b/c"],
  "x-csrf-token": ["", "null", "a".repeat(10_000)],
  "x-api-key": ["", "' OR '1'='1", "a".repeat(10_000)]
}

const oddHeaders: fc.Arbitrary<Record<string, string>> = fc.oneof(
  fc.integer({ min: 8_000, max: 80_000 }).map((n) => ({ "x-huge": "a".repeat(n) })),
  fc
    .integer({ min: 50, max: 500 })
    .map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-h-${i}`, String(i)]))),
  fc
    .tuple(fc.constantFrom(...Object.keys(oddHeaderValues)), fc.string({ unit: latin1Unit, maxLength: 64 }))
    .map(([name, value]) => ({ [name]: headerSafe(value) })),
  fc
    .tuple(
      fc.constantFrom(...Object.keys(oddHeaderValues)),
      fc.string({ unit: fc.constantFrom(...unicodeEdges), minLength: 1, maxLength: 8 })
    )
    .map(([name, value]) => ({ [name]: headerSafe(value) })),
  fc
    .constantFrom(
      ...Object.entries(oddHeaderValues).flatMap(([name, values]) =>
        values.map((value) => [name, value] as const)
      )
    )
    .map(([name, value]) => ({ [name]: headerSafe(value) }))
)

const oddCookies: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    "",
    "=",
    ";",
    ";;;",
    "a",
    "a=",
    "=b",
    "a=b=c",
    "a=%",
    "a=%E0%A4%A",
    'a="b',
    'a="""',
    " a = b ",
    "a=b; a=c",
    "sid=s%3A.",
    "sid=s:abc.def",
    "sid=",
    "__proto__=x",
    "constructor=y",
    "a=b;;; c=d",
    "\u00ff=\u00ff",
    "session=null",
    "csrf=undefined"
  ),
  fc
    .integer({ min: 50, max: 800 })
    .map((n) => Array.from({ length: n }, (_, i) => `c${i}=${"v".repeat(20)}`).join("; ")),
  fc.integer({ min: 4_000, max: 64_000 }).map((n) => `sid=${"x".repeat(n)}`),
  fc.string({ unit: latin1Unit, maxLength: 128 }),
  fc.string({ unit: fc.constantFrom(...unicodeEdges, "=", ";", " ", "a"), maxLength: 32 })
)

// Percent-encodes text for a path or query, leaving lone surrogates as the bytes a raw client
// could send (encodeURIComponent refuses them).
const encodeSegment = (text: string): string =>
  [...text]
    .map((ch) => {
      const code = ch.charCodeAt(0)
      return ch.length === 1 && code >= 0xd800 && code <= 0xdfff
        ? [0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f)]
            .map((b) => `%${b.toString(16).toUpperCase()}`)
            .join("")
        : encodeURIComponent(ch)
    })
    .join("")

const manyParams = (n: number) => Array.from({ length: n }, (_, i) => `a${i}=${i}`).join("&")

const oddQueries: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    "",
    "&",
    "&&&",
    "=",
    "==",
    "a",
    "a=",
    "=a",
    "a[b][c]=1",
    "__proto__[polluted]=1",
    "__proto__=1",
    "constructor[prototype][polluted]=1",
    "a[]=1&a[]=2",
    "a=1;b=2",
    "%26=%3D",
    "a=%2B+%20",
    "page=-1",
    "page=NaN",
    "page=1e309",
    "limit=99999999999999999999",
    "sort=__proto__"
  ),
  fc.integer({ min: 100, max: 3_000 }).map(manyParams),
  fc.integer({ min: 1_000, max: 100_000 }).map((n) => `q=${"a".repeat(n)}`),
  fc.integer({ min: 2, max: 1_000 }).map((n) => Array.from({ length: n }, () => "a=1").join("&")),
  fc
    .string({ unit: fc.constantFrom(...unicodeEdges, "=", "&", "a", "+"), maxLength: 24 })
    .map((text) => [...text].map((ch) => ("=&+a".includes(ch) ? ch : encodeSegment(ch))).join(""))
)

const invalidUtf8: ReadonlyArray<ReadonlyArray<number>> = [
  [0xff],
  [0xc0, 0x80],
  [0xed, 0xa0, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d],
  [0xef, 0xbb, 0xbf, 0x7b, 0x7d],
  [0xfe, 0xff, 0x00, 0x7b, 0x00, 0x7d]
]

const sameHeaders = (base: Readonly<Record<string, string>>, extra: Readonly<Record<string, string>>) => {
  const out: Record<string, string> = {}
  const names = new Set(Object.keys(extra).map((n) => n.toLowerCase()))
  for (const [name, value] of Object.entries(base)) if (!names.has(name.toLowerCase())) out[name] = value
  return { ...out, ...extra }
}

const json = { "content-type": "application/json" } as const

const hostileFor = (
  target: Target,
  kinds: ReadonlyArray<HostileKind>,
  base: Readonly<Record<string, string>>,
  validJson: fc.Arbitrary<string>,
  oversize: number
): ReadonlyArray<fc.Arbitrary<TestRequest>> => {
  const bodyMethod = withoutBody.has(target.method) ? undefined : target.method
  const path = pathArbitrary(target.path, {}).map((p) => p.path)
  const make =
    (kind: HostileKind) =>
    (fields: {
      readonly method?: string
      readonly path: string
      readonly headers?: Readonly<Record<string, string>>
      readonly body?: string | Uint8Array
    }): TestRequest =>
      makeRequest({
        method: fields.method ?? target.method,
        path: fields.path,
        headers: sameHeaders(base, fields.headers ?? {}),
        ...(fields.body === undefined ? {} : { body: fields.body }),
        kind
      })
  const build = (kind: HostileKind): fc.Arbitrary<TestRequest> | undefined => {
    if (bodyKinds.has(kind) && bodyMethod === undefined) return undefined
    const to = make(kind)
    switch (kind) {
      case "malformed-json":
        return fc
          .tuple(
            path,
            fc.oneof(
              fc.constantFrom(...malformedJson),
              fc.string(),
              fc.jsonValue().map((value) => JSON.stringify(value)),
              fc.integer({ min: 1_000, max: 20_000 }).map((n) => "[".repeat(n) + "]".repeat(n)),
              fc.integer({ min: 1_000, max: 20_000 }).map((n) => '{"a":'.repeat(n) + "1" + "}".repeat(n))
            )
          )
          .map(([p, body]) => to({ path: p, headers: json, body }))
      case "truncated-json":
        return fc
          .tuple(path, validJson, fc.nat())
          .map(([p, text, cut]) =>
            to({ path: p, headers: json, body: text.slice(0, text.length <= 1 ? 0 : cut % text.length) })
          )
      case "oversized-body":
        return fc
          .tuple(path, fc.integer({ min: oversize, max: oversize * 2 }))
          .map(([p, n]) => to({ path: p, headers: json, body: `{"data":"${"x".repeat(n)}"}` }))
      case "lying-content-length":
        return fc
          .tuple(
            path,
            validJson,
            fc.constantFrom("99999999999", "1", "0", "-1", "abc", "1.5", "00000000001", "1, 2")
          )
          .map(([p, body, length]) => to({ path: p, headers: { ...json, "content-length": length }, body }))
      case "wrong-content-type":
        return fc
          .tuple(
            path,
            validJson,
            fc.oneof(
              fc
                .constantFrom(...contentTypes)
                .map((type) => ({ "content-type": type }) as Record<string, string>),
              fc.constant({} as Record<string, string>),
              fc
                .constantFrom("gzip", "br", "deflate", "identity, gzip", "x-unknown")
                .map((coding) => ({ ...json, "content-encoding": coding }) as Record<string, string>)
            )
          )
          .map(([p, body, headers]) => {
            const request = to({ path: p, headers, body })
            // No Content-Type at all: the base headers must not put one back.
            if (Object.keys(headers).length > 0) return request
            const { "content-type": _, ...rest } = request.headers
            return makeRequest({ ...request, headers: rest })
          })
      case "odd-headers":
        return fc.tuple(path, oddHeaders).map(([p, headers]) => to({ path: p, headers }))
      case "odd-cookies":
        return fc
          .tuple(path, oddCookies)
          .map(([p, cookie]) => to({ path: p, headers: { cookie: headerSafe(cookie) } }))
      case "bad-percent-encoding":
        return fc
          .tuple(path, fc.constantFrom(...badPercent), fc.constantFrom("segment", "append", "value", "key"))
          .map(([p, bad, where]) =>
            to({
              path:
                where === "segment"
                  ? p.replace(/[^/]*$/, bad)
                  : where === "append"
                    ? `${p}${bad}`
                    : where === "value"
                      ? `${p}?q=${bad}`
                      : `${p}?${bad}=1`
            })
          )
      case "nul-bytes":
        return fc.oneof(
          fc
            .tuple(path, fc.constantFrom("%00", "/%00", "?q=%00", "?%00=1", "%00.json", "?q=a%00b"))
            .map(([p, suffix]) => to({ path: `${p}${suffix}` })),
          ...(bodyMethod === undefined
            ? []
            : [
                fc
                  .tuple(
                    path,
                    fc.constantFrom('{"a":"\\u0000"}', '{"a":"\0"}', "\0", '{"\\u0000":1}'),
                    validJson
                  )
                  .map(([p, body, valid]) =>
                    to({ path: p, headers: json, body: body === "\0" ? `\0${valid}` : body })
                  ),
                path.map((p) => to({ path: p, headers: json, body: new Uint8Array([0x7b, 0x00, 0x7d]) }))
              ])
        )
      case "unicode":
        return fc.oneof(
          fc
            .tuple(path, fc.string({ unit: fc.constantFrom(...unicodeEdges), minLength: 1, maxLength: 6 }))
            .map(([p, text]) => to({ path: `${p}/${encodeSegment(text)}` })),
          fc
            .tuple(path, fc.string({ unit: fc.constantFrom(...unicodeEdges), minLength: 1, maxLength: 6 }))
            .map(([p, text]) => to({ path: `${p}?q=${encodeSegment(text)}` })),
          ...(bodyMethod === undefined
            ? []
            : [
                fc
                  .tuple(
                    path,
                    fc.oneof(
                      fc.constantFrom(...invalidUtf8),
                      fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 64 })
                    )
                  )
                  .map(([p, bytes]) => to({ path: p, headers: json, body: new Uint8Array(bytes) })),
                fc
                  .tuple(path, fc.string({ unit: fc.constantFrom(...unicodeEdges, "a"), maxLength: 32 }))
                  .map(([p, text]) =>
                    to({
                      path: p,
                      headers: json,
                      body: JSON.stringify({ title: text, body: text, name: text })
                    })
                  ),
                fc
                  .tuple(path, validJson)
                  .map(([p, valid]) => to({ path: p, headers: json, body: `\ufeff${valid}` })),
                fc.tuple(path, fc.integer({ min: 1, max: 5_000 })).map(([p, n]) =>
                  to({
                    path: p,
                    headers: json,
                    body: JSON.stringify({ title: "😀".repeat(n), body: "e\u0301".repeat(n) })
                  })
                )
              ])
        )
      case "path-traversal": {
        const params = parsePath(target.path).flatMap((s) => (s._tag === "Param" ? [s.name] : []))
        const prefix = target.path.split("/:")[0]!.replace(/\/\*$/, "").replace(/\/$/, "")
        return fc.oneof(
          fc.constantFrom(...traversalPaths).map((p) => to({ path: `${prefix}${p}` })),
          fc.constantFrom(...traversalPaths).map((p) => to({ path: p })),
          ...(params.length === 0
            ? []
            : [
                pathArbitrary(
                  target.path,
                  Object.fromEntries(params.map((name) => [name, fc.constantFrom(...traversalValues)]))
                ).map((p) => to({ path: p.path }))
              ])
        )
      }
      case "wrong-method": {
        const others = methods.filter(
          (m) => m !== target.method && !(target.method === "GET" && m === "HEAD")
        )
        return fc.tuple(path, fc.constantFrom(...others)).map(([p, method]) => to({ method, path: p }))
      }
      case "odd-query":
        return fc.tuple(path, oddQueries).map(([p, query]) => to({ path: `${p}?${query}` }))
    }
  }
  // Hostile headers, cookies, paths and queries on a route that takes a body come with a valid
  // one, so they get past the body checks to whatever reads them.
  const withValidBody = (arb: fc.Arbitrary<TestRequest>): fc.Arbitrary<TestRequest> =>
    bodyMethod === undefined
      ? arb
      : fc
          .tuple(arb, validJson)
          .map(([request, body]) =>
            request.body !== undefined || request.method !== bodyMethod
              ? request
              : makeRequest({ ...request, headers: sameHeaders(json, request.headers), body })
          )
  return kinds.flatMap((kind) => {
    const arb = build(kind)
    if (arb === undefined) return []
    return [bodyKinds.has(kind) || kind === "wrong-method" ? arb : withValidBody(arb)]
  })
}

/**
 * An arbitrary of hostile requests: malformed, truncated, oversized and mislabelled bodies, lying
 * Content-Length, odd and huge headers and cookies, bad percent-encoding, NUL bytes, Unicode edge
 * cases, path traversal, methods the route does not allow and odd queries. Each carries its family
 * in `kind`. Pair it with `neverFails`.
 *
 * @example
 * ```ts
 * await Testing.neverFails(app, layer, Testing.hostile(app, { headers: { authorization: "Bearer bob-token" } }))
 * ```
 * @category constructors
 */
export const hostile = <G extends Router.Any>(
  app: G,
  options: HostileOptions<Router.RouteId<G>> = {}
): fc.Arbitrary<TestRequest> => {
  const targets = targetsOf(app, options.route)
  const kinds = options.kinds ?? hostileKinds
  const validJson =
    options.body === undefined
      ? fc.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value))
      : jsonRoundTrip(options.body).map((body) => body.json)
  const oversize = options.oversize ?? 1024 * 1024 + 1
  const base = Object.fromEntries(
    Object.entries(options.headers ?? {}).map(([name, value]) => [name, headerSafe(value)])
  )
  const all = [
    ...targets.flatMap((target) => hostileFor(target, kinds, base, validJson, oversize)),
    // Paths no route has.
    ...(options.route === undefined && kinds.includes("path-traversal")
      ? [
          fc
            .constantFrom(...traversalPaths)
            .map((p) => makeRequest({ method: "GET", path: p, headers: base, kind: "path-traversal" }))
        ]
      : [])
  ]
  if (all.length === 0) throw new Error("Testing.hostile: no family of hostile requests applies to the route")
  return all.length === 1 ? all[0]! : fc.oneof(...all)
}

// ---------------------------------------------------------------------------------------------------
// The property
// ---------------------------------------------------------------------------------------------------

/**
 * Options of `neverFails`.
 *
 * @category models
 */
export interface NeverFailsOptions extends Property.Options {
  /** Real milliseconds a request may take, reading its whole response; default 5 000. */
  readonly timeout?: number | undefined
  /** More to check on each response; throw (an `expect`) to fail the case. */
  readonly check?: ((response: TestResponse, request: TestRequest) => void | Promise<void>) | undefined
}

const wait = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref())

/**
 * Asserts that no request of the arbitrary makes the app answer 5xx, hang past `timeout` or throw.
 * On failure it rejects with fast-check's report: the seed, the path and the shrunk request.
 *
 * @example
 * ```ts
 * it("hostile requests never get 5xx", () =>
 *   Testing.neverFails(app, Notes.layerMemory, Testing.hostile(app, { headers: { authorization: "Bearer bob-token" } })))
 * ```
 * @category assertions
 */
export const neverFails = async <G extends Router.Any, LE = never>(
  app: G & App.ServeCheck<G>,
  services: Layer.Layer<App.Services<G>, LE, never>,
  arbitrary: fc.Arbitrary<TestRequest>,
  options?: NeverFailsOptions
): Promise<void> => {
  const timeout = options?.timeout ?? 5_000
  const { handler, dispose } = App.toWebHandler(app, services)
  try {
    await fc.assert(
      fc.asyncProperty(arbitrary, async (request) => {
        let timer: ReturnType<typeof setTimeout> | undefined
        const timedOut = new Promise<"timeout">((resolve) => {
          timer = setTimeout(() => resolve("timeout"), timeout)
        })
        const answered = (async () => readResponse(await handler(toRequest(request))))()
        const response = await Promise.race([answered, timedOut]).finally(() => clearTimeout(timer))
        if (response === "timeout") {
          answered.catch(() => undefined)
          throw new Error(`The app did not answer within ${timeout} ms`)
        }
        if (response.status >= 500) {
          throw new Error(`The app answered ${response.status}: ${shorten(response.text(), 1_000)}`)
        }
        await options?.check?.(response, request)
      }),
      parametersOf(options)
    )
  } finally {
    // A handler stuck past its deadline must not hold the test: stop waiting after a second.
    await Promise.race([dispose(), wait(1_000)])
  }
}
