/**
 * Response compression with brotli and gzip, negotiated from `Accept-Encoding` (q-values honoured),
 * for bodies above a threshold whose type is worth compressing. Use it on routes that send text
 * (HTML, JSON, JS, CSS); already-compressed types (images, video, archives, fonts) pass untouched.
 *
 * Reused from Effect: `HttpMiddleware.compression` does the work — it skips 1xx/204/206/304, bodies
 * that already have a `Content-Encoding`, `Cache-Control: no-transform`, empty bodies and known
 * lengths under the threshold; sets `Vary: Accept-Encoding`; weakens a strong ETag (`"x"` →
 * `W/"x"`) on what it compresses, as nginx and Apache do, since the bytes differ but the content is
 * the same; and compresses through the `HttpPlatform` (node:zlib on Node, with `flush` after each
 * chunk, so streams stay streams; in-memory bodies are compressed in one call). Added here: the
 * choice by the client's q-values (Effect takes the first of the server's list the client accepts at
 * all), `identity` preferred when the client ranks it higher, HEAD left alone, a Strata middleware
 * whose `HttpPlatform` need is typed, and a wider list of compressible types.
 *
 * It runs when the response is sent (a pre-response hook), after every middleware, so an ETag that
 * `Conditional` computed is the hash of the uncompressed body and stays valid; a 304 keeps the tag
 * the handler computed, which the weak comparison of `If-None-Match` matches against `W/"x"`.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as HttpMiddleware from "effect/http/HttpMiddleware"
import * as HttpPlatform from "effect/http/HttpPlatform"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as Middleware from "./Middleware.ts"

/**
 * A content coding the middleware may use.
 *
 * @category models
 */
export type Encoding = HttpPlatform.CompressionAlgorithm

/**
 * Options of the middleware.
 *
 * @category models
 */
export interface Options {
  /** Codings in the server's order of preference, used to break q-value ties; default `["br", "gzip"]`. */
  readonly encodings?: ReadonlyArray<Encoding> | undefined
  /** Bodies whose length is known and below this many bytes are sent as they are; default 1024. */
  readonly threshold?: number | undefined
  /** Which content types to compress; default `isCompressible`. */
  readonly compressible?: ((contentType: string) => boolean) | undefined
  /** Compression levels; defaults gzip 6, brotli 4 (fast enough for responses made per request). */
  readonly levels?:
    | {
        readonly gzip?: number | undefined
        readonly deflate?: number | undefined
        readonly br?: number | undefined
        readonly zstd?: number | undefined
      }
    | undefined
}

const compressibleTypes = new Set([
  "application/json",
  "application/javascript",
  "application/x-javascript",
  "application/ecmascript",
  "application/xml",
  "application/wasm",
  "application/x-ndjson",
  "application/graphql",
  "application/yaml",
  "application/x-yaml",
  "application/toml",
  "application/rtf",
  "application/x-sh",
  "application/vnd.ms-fontobject",
  "font/ttf",
  "font/otf",
  "font/collection",
  "image/svg+xml",
  "image/bmp",
  "image/x-icon",
  "image/vnd.microsoft.icon"
])

/**
 * The default test of what to compress: text, JSON, XML, JavaScript, SVG, WebAssembly, and the
 * uncompressed font and icon formats. Everything else (JPEG, PNG, WebP, AVIF, video, audio, zip,
 * gzip, brotli, woff/woff2, PDF, …) is already compressed, or not known to gain, and is left alone.
 *
 * @category predicates
 */
export const isCompressible = (contentType: string): boolean => {
  const semi = contentType.indexOf(";")
  const type = (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase()
  return (
    type.startsWith("text/") || compressibleTypes.has(type) || type.endsWith("+json") || type.endsWith("+xml")
  )
}

// RFC 9110 §12.4.2: a qvalue has at most three decimals and is at most 1.
const member = /^([a-z0-9!#$%&'*+.^_`|~-]+)(?:;q=(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?))?$/

/**
 * Reads `Accept-Encoding` into codings and their q-values; `undefined` when it is malformed.
 *
 * @category parsing
 */
export const parseAcceptEncoding = (header: string): ReadonlyMap<string, number> | undefined => {
  const accepted = new Map<string, number>()
  for (const part of header.split(",")) {
    const item = part
      .trim()
      .toLowerCase()
      .replace(/[ \t]*;[ \t]*/g, ";")
      .replace(/[ \t]*=[ \t]*/g, "=")
    if (item === "") continue
    const match = member.exec(item)
    if (match === null) return undefined
    accepted.set(match[1]!, match[2] === undefined ? 1 : Number(match[2]))
  }
  return accepted
}

/**
 * The codings to try for a request, best first: the client's q-values decide and the server's order
 * breaks ties. `q=0` refuses a coding, `*` stands for codings not named, and a coding the client
 * ranks below `identity` is not used. No header, an empty or a malformed one gives `[]`: the body is
 * sent as it is (not a 406: every client can read an uncompressed body).
 *
 * @category parsing
 */
export const negotiate = (
  header: string | undefined,
  preferred: ReadonlyArray<Encoding>
): ReadonlyArray<Encoding> => {
  if (header === undefined) return []
  const accepted = parseAcceptEncoding(header)
  if (accepted === undefined) return []
  const wildcard = accepted.get("*")
  const identity = accepted.get("identity") ?? wildcard ?? 0
  return preferred
    .map((encoding, rank) => ({ encoding, rank, q: accepted.get(encoding) ?? wildcard ?? 0 }))
    .filter(({ q }) => q > 0 && q >= identity)
    .toSorted((a, b) => b.q - a.q || a.rank - b.rank)
    .map(({ encoding }) => encoding)
}

/**
 * Compresses responses with the best coding the client accepts (brotli, then gzip by default).
 * Needs the platform's `HttpPlatform` (given by `NodeHttpServer.layer`), which does the compressing.
 *
 * @example
 * ```ts
 * Router.make(routes).pipe(Router.use(Compression.middleware({ threshold: 2048 })))
 * ```
 * @category middleware
 */
export const middleware = (options: Options = {}) => {
  const preferred = options.encodings ?? ["br", "gzip"]
  const base = {
    minSize: options.threshold ?? 1024,
    compressible: options.compressible ?? isCompressible,
    levels: options.levels
  }
  return Middleware.effect({
    name: "compression",
    build: Effect.map(
      HttpPlatform.HttpPlatform,
      (platform) => (next: Middleware.Next<never, never>) =>
        Effect.gen(function* () {
          const request = yield* HttpServerRequest.HttpServerRequest
          // A HEAD response has no body to compress; its headers describe the identity body.
          if (request.method === "HEAD") return yield* next
          const algorithms = negotiate(request.headers["accept-encoding"], preferred)
          return yield* HttpMiddleware.compression({ ...base, algorithms })(next).pipe(
            Effect.provideService(HttpPlatform.HttpPlatform, platform)
          )
        })
    )
  })
}
