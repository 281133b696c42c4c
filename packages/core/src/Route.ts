/**
 * A route: a method, a path and a handler effect whose errors and request needs are tracked in its
 * type. Routes are grouped, given middleware and served through `Router` and `App`.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import type * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"

/**
 * @category type ids
 */
export const TypeId = "~@strata/core/Route" as const

/**
 * The methods a route can answer; `*` answers every method.
 *
 * @category models
 */
export type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" | "HEAD" | "*"

/**
 * A route path, as Effect's router reads it (`/users/:id`, `/files/*`).
 *
 * @category models
 */
export type Path = HttpRouter.PathInput

/**
 * A route. `E` is what its handler may fail with, `R` the services it reads beyond the request
 * itself: request-scoped ones that middleware must provide and app services the app layer provides.
 *
 * @category models
 */
export interface Route<out M extends Method, out P extends string, out E, out R> extends Pipeable {
  readonly [TypeId]: typeof TypeId
  readonly "~types": { readonly M: M; readonly P: P; readonly E: E; readonly R: R }
  readonly method: M
  readonly path: P
  readonly handler: Effect.Effect<HttpServerResponse.HttpServerResponse, any, any>
  readonly uninterruptible: boolean
}

/**
 * Any route.
 *
 * @category models
 */
export type Any = Route<Method, string, any, any>

/**
 * A handler: a response, an effect of one, or a function of the request to an effect of one.
 *
 * @category models
 */
export type Handler<E, R> =
  | HttpServerResponse.HttpServerResponse
  | Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
  | ((
      request: HttpServerRequest.HttpServerRequest
    ) => Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>)

const Proto = {
  [TypeId]: TypeId,
  pipe() {
    return pipeArguments(this, arguments)
  }
}

/**
 * Is this value a route?
 *
 * @category guards
 */
export const isRoute = (u: unknown): u is Any => typeof u === "object" && u !== null && TypeId in u

/**
 * Makes a route.
 *
 * @category constructors
 */
export const make = <const M extends Method, const P extends Path, E = never, R = never>(
  method: M,
  path: P,
  handler: Handler<E, R>,
  options?: { readonly uninterruptible?: boolean | undefined }
): Route<M, P, E, Exclude<R, HttpRouter.Provided>> => {
  const self = Object.create(Proto)
  self.method = method
  self.path = path
  self.handler = HttpServerResponse.isHttpServerResponse(handler)
    ? Effect.succeed(handler)
    : Effect.isEffect(handler)
      ? handler
      : Effect.flatMap(HttpServerRequest.HttpServerRequest, handler)
  self.uninterruptible = options?.uninterruptible ?? false
  return self
}

const method =
  <const M extends Method>(m: M) =>
  <const P extends Path, E = never, R = never>(
    path: P,
    handler: Handler<E, R>,
    options?: { readonly uninterruptible?: boolean | undefined }
  ): Route<M, P, E, Exclude<R, HttpRouter.Provided>> =>
    make(m, path, handler, options)

/**
 * A `GET` route (it answers `HEAD` too).
 *
 * @category constructors
 */
export const get = method("GET")

/**
 * A `POST` route.
 *
 * @category constructors
 */
export const post = method("POST")

/**
 * A `PUT` route.
 *
 * @category constructors
 */
export const put = method("PUT")

/**
 * A `PATCH` route.
 *
 * @category constructors
 */
export const patch = method("PATCH")

/**
 * A `DELETE` route.
 *
 * @category constructors
 */
export const del = method("DELETE")

/**
 * An `OPTIONS` route.
 *
 * @category constructors
 */
export const options = method("OPTIONS")

/**
 * A route for every method.
 *
 * @category constructors
 */
export const all = method("*")
