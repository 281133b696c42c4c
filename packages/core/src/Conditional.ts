/**
 * Conditional GET: a strong ETag (a hash of the body) on 200 responses to GET and HEAD, and a 304 Not
 * Modified when the client's `If-None-Match` (or `If-Modified-Since`) shows it already has them.
 * Use it on routes that answer with in-memory bodies (JSON, HTML) so clients can revalidate cheaply.
 *
 * Reused from Effect: `Headers.parseHttpDate` for dates and the `HttpServerResponse` model. Effect's
 * `HttpStaticServer` evaluates preconditions only for files and keeps that code private, so the
 * RFC 9110 §13.2.2 evaluation is written here, and `Static` reuses it.
 *
 * @since 0.1.0
 */
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Headers from "effect/http/Headers"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { createHash } from "node:crypto"
import * as Middleware from "./Middleware.ts"

/**
 * One entity-tag of a request's `If-None-Match` or `If-Match` list.
 *
 * @category models
 */
export interface EntityTag {
  readonly weak: boolean
  /** The opaque tag without quotes. */
  readonly value: string
}

/**
 * Reads an entity-tag list (`W/"a", "b"`) or `*`. Tags may contain commas inside their quotes, so the
 * list is scanned rather than split. Unquoted tags (`abc`, `W/abc`) are accepted as a courtesy to
 * sloppy clients; they compare as if quoted.
 *
 * @category parsing
 */
export const parseEntityTags = (header: string): "*" | ReadonlyArray<EntityTag> => {
  if (header.trim() === "*") return "*"
  const tags: Array<EntityTag> = []
  let i = 0
  while (i < header.length) {
    const c = header[i]!
    if (c === "," || c === " " || c === "\t") {
      i++
      continue
    }
    let weak = false
    if ((c === "W" || c === "w") && header[i + 1] === "/") {
      weak = true
      i += 2
    }
    if (header[i] === '"') {
      const end = header.indexOf('"', i + 1)
      if (end === -1) {
        tags.push({ weak, value: header.slice(i + 1).trim() })
        break
      }
      tags.push({ weak, value: header.slice(i + 1, end) })
      i = end + 1
    } else {
      let end = header.indexOf(",", i)
      if (end === -1) end = header.length
      const value = header.slice(i, end).trim()
      if (value !== "") tags.push({ weak, value })
      i = end + 1
    }
  }
  return tags
}

/**
 * Reads one entity-tag as a response carries it (`"abc"`, `W/"abc"`).
 *
 * @category parsing
 */
export const parseEntityTag = (etag: string): EntityTag | undefined => {
  const tags = parseEntityTags(etag)
  return tags === "*" ? undefined : tags[0]
}

/**
 * Does `If-None-Match` match the response's ETag? Weak comparison (RFC 9110 §8.8.3.2): `W/"a"`
 * and `"a"` match, as they must once a compressing middleware weakens the tag.
 *
 * @category predicates
 */
export const ifNoneMatchMatches = (ifNoneMatch: string, etag: string | undefined): boolean => {
  const tags = parseEntityTags(ifNoneMatch)
  if (tags === "*") return true
  const current = etag === undefined ? undefined : parseEntityTag(etag)
  return current !== undefined && tags.some((tag) => tag.value === current.value)
}

/**
 * Does `If-Match` match the response's ETag? Strong comparison (RFC 9110 §13.1.1): weak tags match
 * nothing.
 *
 * @category predicates
 */
export const ifMatchMatches = (ifMatch: string, etag: string | undefined): boolean => {
  const tags = parseEntityTags(ifMatch)
  if (tags === "*") return true
  const current = etag === undefined ? undefined : parseEntityTag(etag)
  if (current === undefined || current.weak) return false
  return tags.some((tag) => !tag.weak && tag.value === current.value)
}

// `true` modified, `false` not, `undefined` when either date is invalid: the precondition is then
// ignored (RFC 9110 §13.1.3–4).
const modifiedSince = (since: string, lastModified: string | undefined): boolean | undefined => {
  if (lastModified === undefined) return undefined
  const sinceDate = Headers.parseHttpDate(since)
  const lastDate = Headers.parseHttpDate(lastModified)
  if (Result.isFailure(sinceDate) || Result.isFailure(lastDate)) return undefined
  return DateTime.toEpochMillis(lastDate.success) > DateTime.toEpochMillis(sinceDate.success)
}

/**
 * The headers a 304 repeats from the 200 it stands for (RFC 9110 §15.4.5), plus Last-Modified for the
 * next revalidation.
 *
 * @category constants
 */
export const notModifiedHeaders: ReadonlyArray<string> = [
  "cache-control",
  "content-location",
  "date",
  "etag",
  "expires",
  "last-modified",
  "vary"
]

/**
 * The 304 that stands for `response`: no body, the validator and caching headers kept, cookies kept.
 *
 * @category constructors
 */
export const notModified = (
  response: HttpServerResponse.HttpServerResponse
): HttpServerResponse.HttpServerResponse => {
  const headers: Record<string, string> = {}
  for (const name of notModifiedHeaders) {
    const value = response.headers[name]
    if (value !== undefined) headers[name] = value
  }
  return HttpServerResponse.empty({ status: 304, headers, cookies: response.cookies })
}

/**
 * Evaluates the preconditions of a GET or HEAD request against the 200 response it would get, in the
 * order of RFC 9110 §13.2.2: `If-Match`, else `If-Unmodified-Since` (412 when they fail), then
 * `If-None-Match`, else `If-Modified-Since` (304 when the client's copy is current). `undefined` means
 * send the response.
 *
 * @category combinators
 */
export const evaluate = (
  requestHeaders: Headers.Headers,
  response: HttpServerResponse.HttpServerResponse
): HttpServerResponse.HttpServerResponse | undefined => {
  const etag = response.headers["etag"]
  const lastModified = response.headers["last-modified"]
  const ifMatch = requestHeaders["if-match"]
  if (ifMatch !== undefined) {
    if (!ifMatchMatches(ifMatch, etag)) return HttpServerResponse.empty({ status: 412 })
  } else {
    const ifUnmodifiedSince = requestHeaders["if-unmodified-since"]
    if (ifUnmodifiedSince !== undefined && modifiedSince(ifUnmodifiedSince, lastModified) === true) {
      return HttpServerResponse.empty({ status: 412 })
    }
  }
  const ifNoneMatch = requestHeaders["if-none-match"]
  if (ifNoneMatch !== undefined)
    return ifNoneMatchMatches(ifNoneMatch, etag) ? notModified(response) : undefined
  const ifModifiedSince = requestHeaders["if-modified-since"]
  if (ifModifiedSince !== undefined && modifiedSince(ifModifiedSince, lastModified) === false) {
    return notModified(response)
  }
  return undefined
}

/**
 * A strong ETag for a body: its length and a SHA-256 digest, so equal bytes give equal tags on every
 * server of a cluster (no inode or mtime in it).
 *
 * @category constructors
 */
export const etagOf = (body: Uint8Array): string =>
  `"${body.byteLength.toString(16)}-${createHash("sha256").update(body).digest("base64url").slice(0, 32)}"`

/**
 * Options of the middleware.
 *
 * @category models
 */
export interface Options {
  /** Send `W/"…"` tags instead of strong ones (for bodies that are equivalent, not byte-equal). */
  readonly weak?: boolean | undefined
}

/**
 * Adds an ETag to 200 responses to GET and HEAD and answers a matching `If-None-Match` (weak
 * comparison, `*`, lists) or `If-Modified-Since` with a 304 that keeps Cache-Control, ETag, Vary,
 * Expires, Last-Modified and cookies and drops the body; a failed `If-Match` or
 * `If-Unmodified-Since` gets a 412.
 *
 * In-memory bodies get a strong tag hashed from their bytes; an ETag the handler set is kept as it
 * is. Streamed and raw bodies get none (hashing would mean reading them twice), but a stream whose
 * response carries its own ETag (a file) is still answered with 304s. Compression that runs after
 * this (`Compression.middleware`) weakens the tag on compressed bodies; the weak comparison used
 * here still matches it on the next request.
 *
 * @example
 * ```ts
 * Router.group("/api", routes).pipe(Router.use(Conditional.middleware()))
 * ```
 * @category middleware
 */
export const middleware = (options: Options = {}) =>
  Middleware.make({
    name: "conditional",
    apply: (next) =>
      Effect.gen(function* () {
        const request = yield* HttpServerRequest.HttpServerRequest
        const response = yield* next
        if ((request.method !== "GET" && request.method !== "HEAD") || response.status !== 200) {
          return response
        }
        let tagged = response
        if (response.headers["etag"] === undefined) {
          if (response.body._tag !== "Uint8Array") return response
          const etag = etagOf(response.body.body)
          tagged = HttpServerResponse.setHeader(response, "etag", options.weak === true ? `W/${etag}` : etag)
        }
        return evaluate(request.headers, tagged) ?? tagged
      })
  })
