/**
 * Cookies for handlers: read the request's cookies, set and clear cookies on the response, and
 * signed cookies (HMAC, several keys for rotation, the same scheme sessions use) that a client
 * cannot forge.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type * as Cookies_ from "effect/http/Cookies"
import * as HttpEffect from "effect/http/HttpEffect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Middleware from "./Middleware.ts"
import * as Signing from "./internal/signing.ts"

/**
 * Options of a cookie (`maxAge`, `path`, `sameSite`, …), as Effect's cookies take them.
 *
 * @category models
 */
export type CookieOptions = NonNullable<Cookies_.Cookie["options"]>

/**
 * The cookie jar of the current request.
 *
 * @category models
 */
export interface Jar {
  /** A cookie the client sent, as sent. */
  readonly get: (name: string) => string | undefined
  /** A signed cookie's value if its signature verifies with one of the keys; otherwise undefined. */
  readonly getSigned: (name: string) => string | undefined
  /** Sets a cookie on the response (HttpOnly, Secure, SameSite=Lax and Path=/ unless told otherwise). */
  readonly set: (name: string, value: string, options?: CookieOptions) => Effect.Effect<void>
  /** Sets a cookie signed with the newest key. */
  readonly setSigned: (name: string, value: string, options?: CookieOptions) => Effect.Effect<void>
  /** Tells the client to drop a cookie (same path and domain as it was set with). */
  readonly clear: (name: string, options?: CookieOptions) => Effect.Effect<void>
}

/**
 * The request's cookie jar.
 *
 * @category services
 */
export class Cookies extends Middleware.Service<Cookies, Jar>()("@strata/core/Cookies") {}

/**
 * Provides the cookie jar; cookies set through it are added to the response, error responses
 * included. Without `keys`, signed cookies cannot be set (a defect) and none verify.
 *
 * @example
 * ```ts
 * Router.use(Cookies.middleware({ keys: [Redacted.make(process.env.COOKIE_KEY!)] }))
 * // in a handler:
 * const jar = yield* Cookies.Cookies
 * yield* jar.setSigned("theme", "dark", { maxAge: "30 days" })
 * ```
 * @category middleware
 */
export const middleware = (
  options: { readonly keys?: Signing.Keys | undefined; readonly defaults?: CookieOptions } = {}
) => {
  const keys = options.keys === undefined ? undefined : Signing.keyList(options.keys)
  const defaults: CookieOptions = {
    httpOnly: true,
    secure: true,
    sameSite: "lax",
    path: "/",
    ...options.defaults
  }
  return Middleware.make({
    name: "cookies",
    provides: [Cookies],
    apply: (next) =>
      Effect.gen(function* () {
        const request = yield* HttpServerRequest.HttpServerRequest
        const outgoing: Array<
          (response: HttpServerResponse.HttpServerResponse) => HttpServerResponse.HttpServerResponse
        > = []
        let registered = false
        const queue = (
          f: (response: HttpServerResponse.HttpServerResponse) => HttpServerResponse.HttpServerResponse
        ) =>
          Effect.suspend(() => {
            outgoing.push(f)
            if (registered) return Effect.void
            registered = true
            return Effect.provideService(
              HttpEffect.appendPreResponseHandler((_request, response) =>
                Effect.sync(() => outgoing.reduce((r, apply) => apply(r), response))
              ),
              HttpServerRequest.HttpServerRequest,
              request
            )
          })
        const jar: Jar = {
          get: (name) => request.cookies[name],
          getSigned: (name) => {
            const value = request.cookies[name]
            return value === undefined || keys === undefined ? undefined : Signing.unsign(value, keys)
          },
          set: (name, value, cookieOptions) =>
            queue((r) =>
              HttpServerResponse.setCookieUnsafe(r, name, value, { ...defaults, ...cookieOptions })
            ),
          setSigned: (name, value, cookieOptions) =>
            keys === undefined
              ? Effect.die(new Error("Cookies.middleware was given no keys: signed cookies are unavailable"))
              : queue((r) =>
                  HttpServerResponse.setCookieUnsafe(r, name, Signing.sign(value, keys), {
                    ...defaults,
                    ...cookieOptions
                  })
                ),
          clear: (name, cookieOptions) =>
            queue((r) => HttpServerResponse.expireCookieUnsafe(r, name, { ...defaults, ...cookieOptions }))
        }
        return yield* Effect.provideService(next, Cookies, jar)
      })
  })
}
