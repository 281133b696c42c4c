/**
 * CORS: answers preflights and adds the Access-Control headers for allowed origins. Built on
 * Effect's `HttpMiddleware.cors`, with explicit origins (no accidental `*`) and a refusal of `*`
 * with credentials at start.
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as DurationModule from "effect/Duration"
import * as HttpMiddleware from "effect/http/HttpMiddleware"
import * as Middleware from "./Middleware.ts"

/**
 * Options of the CORS middleware.
 *
 * @category models
 */
export interface Options {
  /** `"*"` for any origin (not with credentials), a list of exact origins, or a predicate. */
  readonly origins: "*" | ReadonlyArray<string> | ((origin: string) => boolean)
  readonly methods?: ReadonlyArray<string> | undefined
  /** Request headers allowed; default: whatever the preflight asks for. */
  readonly allowedHeaders?: ReadonlyArray<string> | undefined
  readonly exposedHeaders?: ReadonlyArray<string> | undefined
  /** Send cookies and credentials; needs explicit origins. */
  readonly credentials?: boolean | undefined
  /** How long browsers may cache a preflight answer. */
  readonly maxAge?: Duration.Input | undefined
}

/**
 * The CORS middleware. On a router it also answers that router's preflight (`OPTIONS`) requests.
 *
 * @example
 * ```ts
 * Router.group("/api", routes).pipe(Router.use(Cors.middleware({ origins: ["https://app.example"], credentials: true })))
 * ```
 * @category middleware
 */
export const middleware = (options: Options) => {
  if (options.origins === "*" && options.credentials === true) {
    throw new Error("CORS: credentials cannot be allowed for any origin (*); list the origins")
  }
  if (Array.isArray(options.origins) && options.origins.length === 0) {
    throw new Error('CORS: no origin is allowed; give a list, a predicate, or "*"')
  }
  const origins = options.origins
  const wrap = HttpMiddleware.cors({
    // Effect's cors reads an empty list as "any origin", and answers a one-origin list to every
    // origin; a predicate echoes only allowed origins.
    allowedOrigins:
      origins === "*" ? [] : typeof origins === "function" ? origins : (origin) => origins.includes(origin),
    ...(options.methods === undefined ? {} : { allowedMethods: options.methods }),
    ...(options.allowedHeaders === undefined ? {} : { allowedHeaders: options.allowedHeaders }),
    ...(options.exposedHeaders === undefined ? {} : { exposedHeaders: options.exposedHeaders }),
    ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    ...(options.maxAge === undefined
      ? {}
      : { maxAge: Math.round(DurationModule.toSeconds(DurationModule.fromInputUnsafe(options.maxAge))) })
  })
  return Middleware.make({ name: "cors", apply: (next) => wrap(next) as typeof next })
}
