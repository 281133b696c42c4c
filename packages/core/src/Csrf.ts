/**
 * CSRF protection: unsafe requests (POST, PUT, PATCH, DELETE, …) must carry a token the attacker's
 * page cannot know and come from an allowed origin. Use it on routes a browser reaches with cookies.
 *
 * Two ways to keep the token: `synchronizer` stores it in the session (needs `Session.middleware`
 * earlier on the route); `doubleSubmit` keeps it in a signed cookie, for apps without sessions.
 * Both give handlers the token through `Csrf.Token`, to put into forms (`Csrf.hiddenInput`) or a
 * `<meta>` tag that scripts send back in the `x-csrf-token` header.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Option from "effect/Option"
import * as Path from "effect/Path"
import * as HttpEffect from "effect/http/HttpEffect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as UrlParams from "effect/http/UrlParams"
import * as HttpError from "./HttpError.ts"
import * as Middleware from "./Middleware.ts"
import type * as Session from "./Session.ts"
import { isDevelopment } from "./internal/env.ts"
import * as Signing from "./internal/signing.ts"

/**
 * Why a request was refused: no token sent, a token that is not this client's, or an `Origin`
 * (or `Referer`) that is not allowed.
 *
 * @category models
 */
export type Reason = "missing-token" | "token-mismatch" | "bad-origin"

/**
 * The request failed the CSRF check. Answers 403 with a body that says only "Forbidden": the
 * `reason` is for logs and tests, and no token is ever echoed.
 *
 * @category errors
 */
export class CsrfError extends HttpError.Class("CsrfError", { status: 403, message: "Forbidden" })<{
  readonly reason: Reason
}> {}

/**
 * The CSRF token of the current client, as handlers see it.
 *
 * @category models
 */
export interface TokenShape {
  /**
   * The token. Reading it creates one when the client has none yet (and stores it in the session,
   * or sets the cookie), so pages that never render a form create no session and set no cookie.
   */
  readonly value: string
}

/**
 * The CSRF token of the current request, provided by `synchronizer` and `doubleSubmit`.
 *
 * @example
 * ```ts
 * Route.get("/form", Effect.gen(function* () {
 *   const token = yield* Csrf.token
 *   return HttpServerResponse.html(`<form method="post">${Csrf.hiddenInput(token)}…</form>`)
 * }))
 * ```
 * @category services
 */
export class Token extends Middleware.Service<Token, TokenShape>()("@strata/core/Csrf/Token") {}

/**
 * The token's value, created if the client has none yet.
 *
 * @category accessors
 */
export const token: Effect.Effect<string, never, Token> = Effect.map(Token, (t) => t.value)

const escapeHtml = (text: string): string =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!
  )

/**
 * A hidden form field carrying the token, HTML-escaped: put it inside each `<form method="post">`.
 * `field` must match the middleware's `field` option (default `_csrf`).
 *
 * @example
 * ```ts
 * Csrf.hiddenInput(yield* Csrf.token) // <input type="hidden" name="_csrf" value="…">
 * ```
 * @category constructors
 */
export const hiddenInput = (value: string, field: string = "_csrf"): string =>
  `<input type="hidden" name="${escapeHtml(field)}" value="${escapeHtml(value)}">`

/**
 * Origins allowed to send unsafe requests besides the request's own: exact origins
 * (`"https://app.example"`) or a predicate on the `Origin` value (`"null"` for opaque origins).
 *
 * @category models
 */
export type Origins = ReadonlyArray<string> | ((origin: string) => boolean)

/**
 * Options both kinds of CSRF protection take.
 *
 * @category models
 */
export interface CheckOptions {
  /** The request header that carries the token; default `x-csrf-token`. */
  readonly header?: string | undefined
  /** The form field that carries the token (urlencoded or multipart bodies); default `_csrf`. */
  readonly field?: string | undefined
  /**
   * Origins allowed besides the request's own (its `Host` header, and its scheme when the server
   * knows it). Add the public origin here when a proxy rewrites `Host`.
   */
  readonly origins?: Origins | undefined
  /**
   * Refuse unsafe requests that send neither `Origin` nor `Referer`. Off by default: some privacy
   * tools strip both, and the token alone still protects; turn it on for stricter APIs.
   */
  readonly requireOrigin?: boolean | undefined
}

/**
 * Options of `synchronizer`.
 *
 * @category models
 */
export interface SynchronizerOptions<Self, Key extends string, A> extends CheckOptions {
  /** The app's session service; its middleware must run before this one. */
  readonly session: Session.ServiceClass<Self, Key, A>
}

/**
 * Options of `doubleSubmit`.
 *
 * @category models
 */
export interface DoubleSubmitOptions extends CheckOptions {
  /** Signing keys, newest first: new cookies are signed with the first, any of them is accepted. */
  readonly keys: Signing.Keys
  readonly cookie?:
    | {
        /** Default `__Host-csrf` when secure (the browser then refuses it from subdomains), else `csrf`. */
        readonly name?: string | undefined
        /** Default: secure unless `NODE_ENV` is `development` or `test`. */
        readonly secure?: boolean | undefined
        /** Default `lax`, so the cookie still comes with top-level navigations from other sites. */
        readonly sameSite?: "lax" | "strict" | "none" | undefined
      }
    | undefined
}

const safeMethods: ReadonlySet<string> = new Set(["GET", "HEAD", "OPTIONS", "TRACE"])

interface Check {
  readonly header: string
  readonly field: string
  readonly isAllowedOrigin: (request: HttpServerRequest.HttpServerRequest, origin: string) => boolean
  readonly requireOrigin: boolean
}

const originOf = (url: string): string | undefined => {
  if (!URL.canParse(url)) return undefined
  const origin = new URL(url).origin
  // Opaque origins (sandboxed frames, data: and file: pages) serialize as "null".
  return origin === "null" ? undefined : origin
}

// The scheme the client used, when the server knows it: set by TLS or TrustedProxy, or in the
// absolute URL web handlers receive. A plain Node server behind a TLS proxy does not know it.
const schemeOf = (request: HttpServerRequest.HttpServerRequest): string | undefined =>
  request.protocol ?? /^(https?):/i.exec(request.originalUrl)?.[1]?.toLowerCase()

// The host the client addressed: its `Host` header (HTTP/2: `:authority`), or the host of the absolute
// URL a web handler receives, which carries no `Host` header.
const hostOf = (request: HttpServerRequest.HttpServerRequest): string | undefined =>
  request.headers["host"] ??
  request.headers[":authority"] ??
  (/^https?:\/\//i.test(request.originalUrl) && URL.canParse(request.originalUrl)
    ? new URL(request.originalUrl).host
    : undefined)

const sameOrigin = (request: HttpServerRequest.HttpServerRequest, origin: string): boolean => {
  const host = hostOf(request)
  if (host === undefined) return false
  // An unknown scheme is taken to be the origin's, so only the host (and port) is compared: the
  // browser sets `Host`, so a page elsewhere cannot make it match.
  const scheme = schemeOf(request) ?? origin.slice(0, origin.indexOf(":"))
  return originOf(`${scheme}://${host}`) === origin
}

const makeCheck = (options: CheckOptions): Check => {
  const listed = options.origins
  let extra: (origin: string) => boolean
  if (typeof listed === "function") {
    extra = listed
  } else {
    const origins = new Set(
      (listed ?? []).map((entry) => {
        const origin = originOf(entry)
        if (origin === undefined) throw new Error(`Csrf: not an origin: ${entry}`)
        return origin
      })
    )
    extra = (origin) => origins.has(origin)
  }
  return {
    header: (options.header ?? "x-csrf-token").toLowerCase(),
    field: options.field ?? "_csrf",
    requireOrigin: options.requireOrigin ?? false,
    isAllowedOrigin: (request, value) => {
      const origin = originOf(value)
      if (origin === undefined) return typeof listed === "function" && listed(value)
      return sameOrigin(request, origin) || extra(origin)
    }
  }
}

const checkOrigin = (
  request: HttpServerRequest.HttpServerRequest,
  check: Check
): Effect.Effect<void, CsrfError> => {
  const origin = request.headers["origin"]
  if (origin !== undefined) {
    return check.isAllowedOrigin(request, origin)
      ? Effect.void
      : Effect.fail(new CsrfError({ reason: "bad-origin" }))
  }
  const referer = request.headers["referer"]
  if (referer !== undefined) {
    const refererOrigin = originOf(referer)
    return refererOrigin !== undefined && check.isAllowedOrigin(request, refererOrigin)
      ? Effect.void
      : Effect.fail(new CsrfError({ reason: "bad-origin" }))
  }
  return check.requireOrigin ? Effect.fail(new CsrfError({ reason: "bad-origin" })) : Effect.void
}

// The token the request sends: the header first, else the form field. The body is read through the
// request's own cached accessors, so the handler can read it again.
const suppliedToken = (request: HttpServerRequest.HttpServerRequest, check: Check) =>
  Effect.gen(function* () {
    const header = request.headers[check.header]
    if (header !== undefined && header !== "") return header
    const contentType = request.headers["content-type"]?.toLowerCase() ?? ""
    if (contentType.startsWith("application/x-www-form-urlencoded")) {
      const params = yield* request.urlParamsBody
      return Option.getOrUndefined(UrlParams.getFirst(params, check.field))
    }
    if (contentType.startsWith("multipart/form-data")) {
      // Multipart bodies are persisted (files go to a temporary directory), which needs a file
      // system; the Node server provides one. Without it the field cannot be read safely.
      const fs = yield* Effect.serviceOption(FileSystem.FileSystem)
      const path = yield* Effect.serviceOption(Path.Path)
      if (Option.isNone(fs) || Option.isNone(path)) {
        yield* Effect.logWarning(
          "Csrf: a multipart body cannot be read without FileSystem and Path; send the token in the header"
        )
        return undefined
      }
      const form = yield* request.multipart.pipe(
        Effect.provideService(FileSystem.FileSystem, fs.value),
        Effect.provideService(Path.Path, path.value)
      )
      const value = form[check.field]
      if (typeof value === "string") return value
      const first = Array.isArray(value) ? value[0] : undefined
      return typeof first === "string" ? first : undefined
    }
    return undefined
  })

// The check of an unsafe request against the token the client should send (undefined: it has none).
const verify = (request: HttpServerRequest.HttpServerRequest, check: Check, expected: string | undefined) =>
  Effect.gen(function* () {
    yield* checkOrigin(request, check)
    const supplied = yield* suppliedToken(request, check)
    if (supplied === undefined || supplied === "") return yield* new CsrfError({ reason: "missing-token" })
    if (expected === undefined || !Signing.constantTimeEqual(supplied, expected)) {
      return yield* new CsrfError({ reason: "token-mismatch" })
    }
  })

const metaKey = "csrf"

/**
 * CSRF protection with the token in the session (the synchronizer token pattern). The token is
 * made when a handler first reads `Csrf.Token`, kept for the session's life, and replaced when the
 * session is regenerated (at login), so a token seen before login is useless after it.
 *
 * Safe methods (GET, HEAD, OPTIONS, TRACE) are not checked. Unsafe ones must pass the origin check
 * (`Origin`, else `Referer`; neither is accepted unless `requireOrigin`) and send the token in the
 * header or, for urlencoded and multipart forms, the form field; the handler can still read the body.
 *
 * @example
 * ```ts
 * Router.use(Session.middleware(AppSession, { cookie: { keys } }), Csrf.synchronizer({ session: AppSession }))
 * ```
 * @category middleware
 */
export const synchronizer = <Self, Key extends string, A>(options: SynchronizerOptions<Self, Key, A>) => {
  const check = makeCheck(options)
  const session = options.session
  return Middleware.make({
    name: "csrf-synchronizer",
    provides: [Token],
    requires: [session],
    raises: ["CsrfError", "HttpServerError", "MultipartError"],
    apply: (next) =>
      Effect.gen(function* () {
        const request = yield* HttpServerRequest.HttpServerRequest
        const handle = yield* session
        const stored = handle.meta.get(metaKey)
        if (!safeMethods.has(request.method)) yield* verify(request, check, stored)

        // The token and the session id it was made for: a regenerated session gets a new one.
        let current = stored === undefined ? undefined : { value: stored, id: handle.id() }
        let changed = false
        const fresh = () => {
          current = { value: Signing.randomToken(), id: handle.id() }
          changed = true
          return current.value
        }
        const provided: TokenShape = {
          get value() {
            return current !== undefined && current.id === handle.id() ? current.value : fresh()
          }
        }
        const exit = yield* Effect.exit(Effect.provideService(next, Token, provided))
        if (current !== undefined && current.id !== handle.id()) fresh()
        if (changed) yield* handle.meta.set(metaKey, current!.value)
        return yield* exit
      })
  })
}

// The signed cookie value is `csrf.<token>`, so a value signed for another purpose with the same
// keys (a session id) is never taken for a CSRF token.
const purpose = "csrf."

/**
 * CSRF protection without sessions (the signed double-submit cookie pattern): the token lives in an
 * HttpOnly cookie signed with `keys`, and unsafe requests must send the same token in the header or
 * form field. A forged or tampered cookie does not verify, so a subdomain that can set cookies
 * cannot choose the token. The cookie is set when a handler first reads `Csrf.Token` and the client
 * has no valid one.
 *
 * Safe methods and the origin check are as in `synchronizer`.
 *
 * @example
 * ```ts
 * Router.use(Csrf.doubleSubmit({ keys: [Redacted.make(process.env.CSRF_KEY!)] }))
 * ```
 * @category middleware
 */
export const doubleSubmit = (options: DoubleSubmitOptions) => {
  const check = makeCheck(options)
  const keys = Signing.keyList(options.keys)
  const secure = options.cookie?.secure ?? !isDevelopment()
  const sameSite = options.cookie?.sameSite ?? "lax"
  const cookieName = options.cookie?.name ?? (secure ? "__Host-csrf" : "csrf")
  if (cookieName.startsWith("__Host-") && !secure) {
    throw new Error(`Csrf: a ${cookieName} cookie must be secure`)
  }
  if (sameSite === "none" && !secure) throw new Error("Csrf: a SameSite=None cookie must be secure")
  // `__Host-` cookies must have Path=/ and no Domain; the others get the same, so every route sees it.
  const cookieOptions = { httpOnly: true, secure, sameSite, path: "/" } as const

  const tokenOf = (signed: string | undefined): string | undefined => {
    const value = signed === undefined ? undefined : Signing.unsign(signed, keys)
    return value !== undefined && value.startsWith(purpose) && value.length > purpose.length
      ? value.slice(purpose.length)
      : undefined
  }

  return Middleware.make({
    name: "csrf-double-submit",
    provides: [Token],
    raises: ["CsrfError", "HttpServerError", "MultipartError"],
    apply: (next) =>
      Effect.gen(function* () {
        const request = yield* HttpServerRequest.HttpServerRequest
        const existing = tokenOf(request.cookies[cookieName])
        if (!safeMethods.has(request.method)) yield* verify(request, check, existing)

        let current = existing
        let created = false
        const provided: TokenShape = {
          get value() {
            if (current === undefined) {
              current = Signing.randomToken()
              created = true
            }
            return current
          }
        }
        const exit = yield* Effect.exit(Effect.provideService(next, Token, provided))
        if (created) {
          const signed = Signing.sign(`${purpose}${current!}`, keys)
          yield* HttpEffect.appendPreResponseHandler((_request, response) =>
            Effect.succeed(HttpServerResponse.setCookieUnsafe(response, cookieName, signed, cookieOptions))
          )
        }
        return yield* exit
      })
  })
}
