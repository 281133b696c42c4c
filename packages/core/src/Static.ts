/**
 * Static files: a route that serves a directory, with index files, byte ranges, ETag/Last-Modified
 * revalidation, Cache-Control, precompressed `.br`/`.gz` variants and HEAD, and that never serves a
 * file outside its root. Use it for assets next to an API; it composes with routers and middleware.
 *
 * Reused from Effect: `HttpPlatform.fileResponse` streams the file (a lazy read stream on Node, never a
 * full read into memory) and sets ETag (`Etag.Generator`), Last-Modified and Content-Length;
 * `FileSystem` (`stat`, `realPath`), `Path.resolveWithin`, `Mime.getType`. Effect's `HttpStaticServer`
 * is not reused as a whole: it has no precompressed variants, dotfile policy or realpath check, one
 * index file only, and it reads the whole URL rather than the route's wildcard. The precondition
 * evaluation (304/412) is `Conditional.evaluate`, the choice of a variant `Compression.negotiate`.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Option from "effect/Option"
import * as Path from "effect/Path"
import type { PlatformError } from "effect/PlatformError"
import * as HttpPlatform from "effect/http/HttpPlatform"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Mime from "effect/http/Mime"
import * as Compression from "./Compression.ts"
import * as Conditional from "./Conditional.ts"
import * as HttpError from "./HttpError.ts"
import * as Route from "./Route.ts"

/**
 * A precompressed variant the route may send: `file.br` or `file.gz` next to `file`.
 *
 * @category models
 */
export type Encoding = "br" | "gzip"

/**
 * Options of a static route.
 *
 * @category models
 */
export interface Options {
  /** The directory to serve. Nothing outside it is ever sent, symlinks included. */
  readonly root: string
  /** Files tried, in order, for a directory (`/docs/`); `false` for none. Default `["index.html"]`. */
  readonly index?: ReadonlyArray<string> | false | undefined
  /** The `Cache-Control` of files and 304s, e.g. `"public, max-age=3600"`. None by default. */
  readonly cacheControl?: string | undefined
  /**
   * The files never change at a given URL (fingerprinted names): adds `immutable`, and
   * `public, max-age=31536000` when `cacheControl` is not given.
   */
  readonly immutable?: boolean | undefined
  /**
   * Send `file.br` / `file.gz` when they exist next to `file` and the client accepts the coding
   * (`true` for `["br", "gzip"]`, in the server's order of preference). Default `false`.
   */
  readonly precompressed?: boolean | ReadonlyArray<Encoding> | undefined
  /**
   * Paths with a segment starting with a dot (`.env`, `.git/config`): `"ignore"` answers 404 as if
   * absent (default), `"deny"` answers 403, `"allow"` serves them. `.` and `..` are always refused.
   */
  readonly dotfiles?: "allow" | "deny" | "ignore" | undefined
  /** Content types by extension (without dot), over the defaults of `Mime`. */
  readonly mimeTypes?: Readonly<Record<string, string>> | undefined
}

/**
 * The route paths a static route accepts: a wildcard at the end, e.g. `/assets/*`, or `*` in a
 * group (`Router.group("/assets", [Static.route("*", …)])`).
 *
 * @category models
 */
export type WildcardPath = "*" | "/*" | `/${string}/*`

/**
 * The errors a static route answers with (all have responses): 404 for what is absent or refused, 403
 * for dotfiles under `dotfiles: "deny"`, 400 for a path that is not valid percent-encoding. A
 * `Router.catchTags({ NotFound })` around the route can turn its 404s into something else (an SPA's
 * `index.html`, a custom page).
 *
 * @category models
 */
export type Error = HttpError.NotFound | HttpError.Forbidden | HttpError.BadRequest | MethodNotAllowed

/**
 * A method other than GET, HEAD or OPTIONS reached a static route: 405 with `Allow`.
 *
 * @category errors
 */
export class MethodNotAllowed extends HttpError.Class("MethodNotAllowed", {
  status: 405,
  message: "Method Not Allowed",
  headers: () => ({ allow: "GET, HEAD, OPTIONS" })
})<{ readonly method: string }> {}

/**
 * The app services a static route reads; `NodeHttpServer.layer` provides all three.
 *
 * @category models
 */
export type Services = FileSystem.FileSystem | Path.Path | HttpPlatform.HttpPlatform

/**
 * A route serving `options.root` under `path`, whose wildcard is the file's path relative to the
 * root. It is registered for every method and answers GET and HEAD, OPTIONS with a 204 and `Allow`,
 * anything else with a 405: a GET-only route would let the app's catch-all 404 take HEAD requests
 * (the router falls back from HEAD to GET only when no route at all matches HEAD).
 *
 * - Directories: `/dir` redirects (301) to `/dir/` so relative links in the index resolve; `/dir/`
 *   serves the first `index` file that exists; there are no listings.
 * - Ranges: one range gets a 206 with Content-Range, an unsatisfiable one a 416 with
 *   `Content-Range: bytes *\/size`; a multi-range request gets the whole file (200), which RFC 9110
 *   allows and is simpler than multipart/byteranges. `If-Range` honours strong ETags only (a date
 *   from a file's mtime is not a strong validator). Ranges are served from the uncompressed file.
 * - Revalidation: ETag and Last-Modified come from the file; `If-None-Match` and
 *   `If-Modified-Since` give 304s, `If-Match` and `If-Unmodified-Since` 412s.
 * - Precompressed variants keep the original Content-Type, add `Content-Encoding`, and every
 *   response for a file that has variants carries `Vary: Accept-Encoding`.
 * - Paths: the wildcard is decoded once; a segment that is `.` or starts with `..` (`..`, `....`,
 *   also when encoded as `%2e`), an empty segment (`//`, a leading `/` after decoding), a backslash, a NUL or
 *   any control character, a segment over 255 bytes, or (on Windows) a colon is refused with a 404
 *   before the file system is asked; a path that still resolves outside the root, or whose real
 *   path (symlinks followed) is outside the root's real path, is a 404 too. Malformed
 *   percent-encoding is a 400.
 *
 * @example
 * ```ts
 * const assets = Static.route("/assets/*", {
 *   root: "./public",
 *   cacheControl: "public, max-age=31536000",
 *   immutable: true,
 *   precompressed: true,
 *   dotfiles: "deny"
 * })
 * const app = Router.make([assets, api]).pipe(Router.use(Compression.middleware()))
 * ```
 * @category constructors
 */
export const route = <const P extends WildcardPath>(
  path: P,
  options: Options
): Route.Route<"*", P, Error, Services> => Route.all(path, handler(options))

const defaultIndex: ReadonlyArray<string> = ["index.html"]

// Text types are sent as UTF-8, as browsers otherwise guess.
const withCharset = (type: string): string =>
  type.startsWith("text/") ||
  type === "application/javascript" ||
  type === "application/json" ||
  type === "application/xml" ||
  type === "image/svg+xml" ||
  type.endsWith("+json") ||
  type.endsWith("+xml")
    ? `${type}; charset=utf-8`
    : type

const suffixes: Record<Encoding, string> = { br: ".br", gzip: ".gz" }

/**
 * The handler of `route`, to build the route yourself (`Route.all(path, Static.handler(options))`,
 * e.g. to add `uninterruptible`). The route's path must end with a wildcard: the handler reads the
 * matched route's path to find where the file path starts.
 *
 * @category constructors
 */
export const handler = (
  options: Options
): Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  Error,
  Services | HttpServerRequest.HttpServerRequest | HttpRouter.RouteContext
> => {
  const index = options.index === false ? [] : (options.index ?? defaultIndex)
  const dotfiles = options.dotfiles ?? "ignore"
  const encodings: ReadonlyArray<Encoding> =
    options.precompressed === true ? ["br", "gzip"] : options.precompressed || []
  const cacheControl =
    options.immutable === true
      ? `${options.cacheControl ?? "public, max-age=31536000"}, immutable`
      : options.cacheControl
  const mimeTypes = options.mimeTypes ?? {}
  let knownRoot: string | undefined

  return Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (request.method === "OPTIONS") {
      return HttpServerResponse.empty({ status: 204, headers: { allow: "GET, HEAD, OPTIONS" } })
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return yield* new MethodNotAllowed({ method: request.method })
    }
    const context = yield* HttpRouter.RouteContext
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const platform = yield* HttpPlatform.HttpPlatform

    const url = splitUrl(request.url)
    const target = parseTarget(wildcardOf(url.pathname, context.route.path), path.sep === "\\")
    if (target === "malformed") {
      return yield* new HttpError.BadRequest({ reason: "The path is not valid percent-encoding" })
    }
    if (target === "refused") return yield* new HttpError.NotFound()
    if (dotfiles !== "allow" && target.segments.some((s) => s.startsWith("."))) return yield* hidden(dotfiles)

    const root = path.resolve(options.root)
    const lexical = path.resolveWithin(root, target.segments.join(path.sep))
    if (Option.isNone(lexical)) return yield* new HttpError.NotFound()
    // The real path of `candidate` if it is inside the root; a symlink that leads out is absent.
    // The root's real path is remembered between requests (one file-system call fewer each) and
    // looked up again before refusing, so a root that is a re-pointed symlink (a release switch)
    // is followed.
    const contained = (candidate: string) =>
      Effect.gen(function* () {
        const real = yield* lookup(fs.realPath(candidate))
        let realRoot = knownRoot ?? (knownRoot = yield* lookup(fs.realPath(root)))
        if (!inside(path, realRoot, real)) {
          const fresh = yield* lookup(fs.realPath(root))
          if (fresh === realRoot) return yield* new HttpError.NotFound()
          knownRoot = realRoot = fresh
          if (!inside(path, realRoot, real)) return yield* new HttpError.NotFound()
        }
        const relative = path.relative(realRoot, real)
        if (dotfiles !== "allow" && relative.split(path.sep).some((s) => s.startsWith("."))) {
          return yield* hidden(dotfiles)
        }
        return real
      })

    const real = yield* contained(lexical.value)
    const info = yield* lookup(fs.stat(real))

    if (info.type === "Directory") {
      if (!target.trailingSlash) {
        // Relative, so it stays on this host and survives a proxy that strips a path prefix; `./`
        // keeps a segment with a colon from reading as a scheme.
        const last = url.pathname.slice(url.pathname.lastIndexOf("/") + 1)
        return HttpServerResponse.redirect(`./${last}/${url.search}`, { status: 301 })
      }
      for (const name of index) {
        const found = yield* Effect.option(
          Effect.flatMap(contained(path.join(real, name)), (file) =>
            Effect.map(lookup(fs.stat(file)), (fileInfo) => ({ file, fileInfo }))
          )
        )
        if (Option.isSome(found) && found.value.fileInfo.type === "File") {
          return yield* serve(found.value.file, found.value.fileInfo, name)
        }
      }
      return yield* new HttpError.NotFound()
    }
    if (info.type !== "File" || target.trailingSlash) return yield* new HttpError.NotFound()
    return yield* serve(real, info, target.segments[target.segments.length - 1]!)

    function serve(file: string, fileInfo: FileSystem.File.Info, name: string) {
      return Effect.gen(function* () {
        const contentType = contentTypeOf(name, path.extname(name), mimeTypes)
        const variants: Array<{ readonly encoding: Encoding; readonly file: string }> = []
        for (const encoding of encodings) {
          const variant = yield* Effect.option(
            Effect.flatMap(contained(file + suffixes[encoding]), (variantFile) =>
              Effect.map(lookup(fs.stat(variantFile)), (variantInfo) => ({ variantFile, variantInfo }))
            )
          )
          if (Option.isSome(variant) && variant.value.variantInfo.type === "File") {
            variants.push({ encoding, file: variant.value.variantFile })
          }
        }
        const range = request.method === "GET" ? request.headers["range"] : undefined
        // Ranges are served from the uncompressed file: a range of a compressed body is of little use.
        const best =
          range === undefined
            ? Compression.negotiate(
                request.headers["accept-encoding"],
                variants.map((v) => v.encoding)
              )[0]
            : undefined
        const chosen = variants.find((v) => v.encoding === best)

        const headers: Record<string, string> = { "accept-ranges": chosen === undefined ? "bytes" : "none" }
        if (cacheControl !== undefined) headers["cache-control"] = cacheControl
        if (variants.length > 0) headers["vary"] = "Accept-Encoding"
        if (chosen !== undefined) headers["content-encoding"] = chosen.encoding

        const full = yield* lookup(platform.fileResponse(chosen?.file ?? file, { contentType, headers }))
        const precondition = Conditional.evaluate(request.headers, full)
        if (precondition !== undefined) return precondition
        if (range === undefined || chosen !== undefined) return full

        const ifRange = request.headers["if-range"]
        if (
          ifRange !== undefined &&
          !(ifRange.trim().startsWith('"') && ifRange.trim() === full.headers["etag"])
        ) {
          return full
        }
        const size: bigint = fileInfo.size
        const parsed = parseRange(range, size)
        if (parsed === undefined) return full
        if (parsed === "unsatisfiable") {
          return HttpServerResponse.empty({
            status: 416,
            headers: { "content-range": `bytes */${size}`, "accept-ranges": "bytes" }
          })
        }
        const partial = yield* lookup(
          platform.fileResponse(file, {
            status: 206,
            contentType,
            headers,
            offset: parsed.start,
            bytesToRead: parsed.end - parsed.start + 1n
          })
        )
        return HttpServerResponse.setHeader(
          partial,
          "content-range",
          `bytes ${parsed.start}-${parsed.end}/${size}`
        )
      })
    }
  })
}

/** Whether the real path `real` is `realRoot` or below it. */
const inside = (path: Path.Path, realRoot: string, real: string): boolean => {
  const relative = path.relative(realRoot, real)
  return !(
    relative !== "" &&
    (relative === ".." || relative.startsWith(`..${path.sep}`) || path.isAbsolute(relative))
  )
}

const hidden = (policy: "deny" | "ignore") =>
  Effect.fail(policy === "deny" ? new HttpError.Forbidden({ reason: "dotfile" }) : new HttpError.NotFound())

// Absent, not a directory, a symlink loop, unreadable: the client learns only that nothing is there.
// Anything else (EIO, EMFILE) is the server's problem: a defect, logged and answered with a 500.
const lookup = <A>(self: Effect.Effect<A, PlatformError>): Effect.Effect<A, HttpError.NotFound> =>
  Effect.catch(self, (error) =>
    error.reason._tag === "BadArgument" ||
    error.reason._tag === "NotFound" ||
    error.reason._tag === "BadResource" ||
    error.reason._tag === "PermissionDenied"
      ? Effect.fail(new HttpError.NotFound())
      : Effect.die(error)
  )

const contentTypeOf = (
  name: string,
  extension: string,
  overrides: Readonly<Record<string, string>>
): string => {
  const override = overrides[extension.slice(1).toLowerCase()]
  if (override !== undefined) return override
  return Option.match(Mime.getType(name), {
    onNone: () => "application/octet-stream",
    onSome: withCharset
  })
}

const splitUrl = (url: string): { readonly pathname: string; readonly search: string } => {
  const end = url.search(/[?#]/)
  return end === -1
    ? { pathname: url, search: "" }
    : { pathname: url.slice(0, end), search: url[end] === "?" ? url.slice(end).replace(/#.*$/, "") : "" }
}

/**
 * The raw (still percent-encoded) part of `pathname` that the route's wildcard matched: the route's
 * path says how many segments come before it. The router matches on a decoded, slash-merged,
 * trailing-slash-trimmed path; the raw path is used instead so the wildcard is decoded exactly once,
 * here, and a trailing slash is seen.
 *
 * @internal
 */
export const wildcardOf = (pathname: string, routePath: string): string => {
  const prefix = routePath.endsWith("*") ? routePath.slice(0, -1) : routePath
  const count = prefix.split("/").filter((s) => s !== "").length
  let index = 0
  for (let n = 0; n < count; n++) {
    while (pathname[index] === "/") index++
    while (index < pathname.length && pathname[index] !== "/") index++
  }
  return pathname.slice(index)
}

/**
 * Where a wildcard points: its decoded segments and whether it ends with a slash, or why it is
 * refused. `"malformed"` is bad percent-encoding (400); `"refused"` is everything that could step
 * out of the root or be read differently by the file system (404).
 *
 * @internal
 */
export const parseTarget = (
  wildcard: string,
  windows: boolean
):
  "malformed" | "refused" | { readonly segments: ReadonlyArray<string>; readonly trailingSlash: boolean } => {
  if (wildcard === "") return { segments: [], trailingSlash: false }
  if (!wildcard.startsWith("/")) return "refused"
  let decoded: string
  try {
    decoded = decodeURIComponent(wildcard.slice(1))
  } catch {
    return "malformed"
  }
  if (decoded === "") return { segments: [], trailingSlash: true }
  // NUL and other controls, and backslashes (a separator on Windows, and a way around naive filters).
  if (decoded.length > 4096 || hasControlOrBackslash(decoded)) return "refused"
  const segments = decoded.split("/")
  const trailingSlash = segments[segments.length - 1] === ""
  if (trailingSlash) segments.pop()
  for (const segment of segments) {
    // `.`, `..`, and anything else starting with two dots (`...`, `....`, `..%2f` once decoded twice):
    // legal names, but never worth serving next to the risk.
    if (segment === "" || segment === "." || segment.startsWith("..") || Buffer.byteLength(segment) > 255) {
      return "refused"
    }
    if (windows && segment.includes(":")) return "refused"
  }
  return { segments, trailingSlash }
}

const hasControlOrBackslash = (s: string): boolean => {
  for (let i = 0; i < s.length; i++) {
    const code = s.charCodeAt(i)
    if (code < 0x20 || code === 0x7f || code === 0x5c) return true
  }
  return false
}

/**
 * A `Range` header against a size: one range, `"unsatisfiable"`, or `undefined` to send the whole
 * file (not bytes, malformed, or several ranges).
 *
 * @internal
 */
export const parseRange = (
  header: string,
  size: bigint
): { readonly start: bigint; readonly end: bigint } | "unsatisfiable" | undefined => {
  const value = header.trim()
  if (!/^bytes=/i.test(value)) return undefined
  const spec = value.slice(6).trim()
  if (spec === "" || spec.includes(",")) return undefined
  const match = /^(\d*)\s*-\s*(\d*)$/.exec(spec)
  if (match === null || (match[1] === "" && match[2] === "")) return undefined
  if (match[1] === "") {
    const suffix = BigInt(match[2]!)
    if (suffix === 0n || size === 0n) return "unsatisfiable"
    return { start: size > suffix ? size - suffix : 0n, end: size - 1n }
  }
  const start = BigInt(match[1]!)
  const end = match[2] === "" ? size - 1n : BigInt(match[2]!)
  if (start >= size || start > end) return "unsatisfiable"
  return { start, end: end < size ? end : size - 1n }
}
