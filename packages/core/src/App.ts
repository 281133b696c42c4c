/**
 * Serving a router: the compile-time checks that every request-scoped service is provided by a
 * middleware on its path and every error has a response, then a layer for Effect's HTTP server, a
 * web handler for tests, or a server.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerError from "effect/http/HttpServerError"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import type * as HttpServer from "effect/http/HttpServer"
import * as HttpError from "./HttpError.ts"
import * as Middleware from "./Middleware.ts"
import { RequestId } from "./RequestId.ts"
import * as Route from "./Route.ts"
import * as Router from "./Router.ts"

/**
 * Request-scoped services that routes read and no middleware on their path provides.
 *
 * @category models
 */
export type Missing<G extends Router.Any> = Extract<Router.Router.Requires<G>, Middleware.RequestScoped>

/**
 * Errors that can leave the app without a response mapping.
 *
 * @category models
 */
export type Unmapped<G extends Router.Any> = Exclude<Router.Router.Error<G>, HttpError.Respondable>

/**
 * App-wide services the routes and middleware read (repositories, clients, config): the app layer's
 * requirements.
 *
 * @category models
 */
export type Services<G extends Router.Any> =
  Exclude<Router.Router.Requires<G>, Middleware.RequestScoped> | Router.Router.LayerRequires<G>

/**
 * The check `layer`, `serve` and `toWebHandler` make. The failure is an object type with one
 * property whose name says what is wrong and whose value names the services or errors, so the
 * compiler prints the sentence in its message.
 *
 * @category models
 */
export type ServeCheck<G extends Router.Any> = [Missing<G>] extends [never]
  ? [Unmapped<G>] extends [never]
    ? unknown
    : {
        readonly "strata: errors without a response": `${Middleware.TagOf<Unmapped<G>> | "(untagged error)"} can reach the client unmapped: add Router.catchTags, a handling middleware, or make it an HttpError`
      }
  : {
      readonly "strata: missing request services": `${Middleware.KeyOf<Missing<G>>} is read by a route, but no middleware on its path provides it`
    }

/**
 * Options of serving.
 *
 * @category models
 */
export interface Options {
  /**
   * Answer paths no route matches with a JSON 404 that runs through the top router's middleware
   * (request id, logs, …); default true.
   */
  readonly notFound?: boolean | undefined
}

// Innermost, around each handler: a defect becomes a 500 that says nothing of it, and is logged
// inside the middleware, so the line carries the request id.
const boundary = <E, R>(handler: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
  Effect.catchCauseIf(handler, Cause.hasDies, (cause) =>
    Effect.flatMap(Effect.serviceOption(RequestId), (id) =>
      Effect.as(
        Effect.logError("unexpected defect", cause),
        HttpError.internalError(Option.getOrUndefined(id))
      )
    )
  )

const notFoundResponse = HttpServerResponse.jsonUnsafe(
  { error: "NotFound", message: "Not Found" },
  { status: 404 }
)
const notFound = Route.all("*", notFoundResponse)

// Outermost, around each route with its middleware: errors with a response get it here, so the
// server sees only answers; anything else that escaped the types (a defect in a middleware, an
// untyped failure) becomes a 500 that leaks nothing and is logged with its cause.
const lastResort = <E, R>(app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
  Effect.catchCause(app, (cause) =>
    Cause.hasInterruptsOnly(cause)
      ? Effect.failCause(cause)
      : Effect.flatMap(HttpError.responseOf(cause), ({ response, unexpected }) =>
          unexpected
            ? Effect.as(Effect.logError("unexpected failure", cause), response)
            : Effect.succeed(response)
        )
  )

const preflightFallback = Route.options("*", notFoundResponse)

/** @internal */
export const compile = (root: Router.Any, options: Options = {}) =>
  Effect.gen(function* () {
    const top = options.notFound === false ? root : withChild(root, notFound)
    const order: Array<Middleware.Entry> = []
    const collect = (node: Route.Any | Router.Any) => {
      if (Route.isRoute(node)) return
      order.push(...node.entries)
      node.children.forEach(collect)
    }
    collect(top)
    const built = new Map<Middleware.Entry, Middleware.Wrap>()
    for (const entry of order) {
      if (!built.has(entry)) built.set(entry, yield* entry.build)
    }
    const routes: Array<HttpRouter.Route<any, any>> = []
    const preflights = new Set<string>()
    const visit = (node: Route.Any | Router.Any, prefix: string, wraps: ReadonlyArray<Middleware.Wrap>) => {
      if (Route.isRoute(node)) {
        const handler = lastResort(wraps.reduceRight((inner, wrap) => wrap(inner), boundary(node.handler)))
        const path = Router.joinPath(prefix, node.path) as HttpRouter.PathInput
        routes.push(
          HttpRouter.route(node.method === "HEAD" ? "HEAD" : node.method, path, handler, {
            uninterruptible: node.uninterruptible
          })
        )
        return
      }
      const inner = [...wraps, ...node.entries.map((e) => built.get(e)!)]
      const nested = Router.joinPath(prefix, node.prefix)
      for (const child of node.children) visit(child, nested, inner)
      // A preflight (OPTIONS) to any path under a router with middleware of its own runs through
      // that middleware, so router-level CORS can answer it; otherwise it is a 404 like any miss.
      // Two routers on one prefix: the first one's middleware answers.
      const ownCatchAll = node.children.some(
        (c) => Route.isRoute(c) && c.path === "*" && (c.method === "OPTIONS" || c.method === "*")
      )
      if (nested !== "" && node.entries.length > 0 && !ownCatchAll && !preflights.has(nested)) {
        preflights.add(nested)
        visit(preflightFallback, nested, inner)
      }
    }
    visit(top, "", [])
    // Effect's router answers HEAD with the GET route only when no route matches HEAD at all, and
    // the catch-all always does; so each GET route answers HEAD itself (the server sends no body).
    const taken = new Set(routes.filter((r) => r.method === "HEAD" || r.method === "*").map((r) => r.path))
    const heads = routes
      .filter((route) => route.method === "GET" && !taken.has(route.path))
      .map((route) =>
        HttpRouter.route("HEAD", route.path, route.handler, { uninterruptible: route.uninterruptible })
      )
    routes.push(...heads)
    return routes
  })

const withChild = (router: Router.Any, child: Route.Any): Router.Any => {
  const copy = Object.create(Object.getPrototypeOf(router))
  Object.assign(copy, router, { children: [...router.children, child] })
  return copy
}

/**
 * The router as a layer for Effect's `HttpRouter`, after the compile-time checks. The layer needs
 * the app services its routes and middleware read.
 *
 * @category layers
 */
export const layer = <G extends Router.Any>(
  router: G & ServeCheck<G>,
  options?: Options
): Layer.Layer<never, Router.Router.LayerError<G>, HttpRouter.HttpRouter | Services<G>> =>
  Layer.merge(HttpRouter.addAll(compile(router as Router.Any, options)), unroutable) as any

const isMalformedPath = (url: string): boolean => {
  const end = url.search(/[?#]/)
  try {
    decodeURIComponent(end === -1 ? url : url.slice(0, end))
    return false
  } catch {
    return true
  }
}

// Around the router itself: a path the router cannot even decode (bad percent-encoding) is the
// client's mistake, 400; anything else no route matched is a JSON 404 like the catch-all's.
const unroutable = HttpRouter.use((router) =>
  router.addGlobalMiddleware(((app: Effect.Effect<HttpServerResponse.HttpServerResponse, any>) =>
    Effect.catchIf(
      app,
      (e: unknown) => HttpServerError.isHttpServerError(e) && e.reason._tag === "RouteNotFound",
      (e) =>
        Effect.succeed(
          isMalformedPath((e as HttpServerError.HttpServerError).request.url)
            ? HttpServerResponse.jsonUnsafe(
                { error: "BadRequest", message: "The path is not valid percent-encoding" },
                { status: 400 }
              )
            : notFoundResponse
        )
    )) as any)
)

/**
 * Serves the router on Effect's HTTP server (give it `NodeHttpServer.layer(…)`).
 *
 * @example
 * ```ts
 * App.serve(app).pipe(Layer.provide(NodeHttpServer.layer(createServer, { port: 3000 })), Layer.launch, NodeRuntime.runMain)
 * ```
 * @category layers
 */
export const serve = <G extends Router.Any>(
  router: G & ServeCheck<G>,
  options?: Options
): Layer.Layer<never, Router.Router.LayerError<G>, HttpServer.HttpServer | Services<G>> =>
  HttpRouter.serve(layer(router as any, options) as Layer.Layer<never, any, HttpRouter.HttpRouter>, {
    disableLogger: true
  }) as any

/**
 * A web handler (`Request` in, `Response` out) for the router, with no socket: for tests and for
 * platforms that speak the Fetch API. `services` provides the app services.
 *
 * @example
 * ```ts
 * const { handler, dispose } = App.toWebHandler(app, Layer.succeed(Users, fakeUsers))
 * const response = await handler(new Request("http://test/api/users/1"))
 * ```
 * @category testing
 */
export const toWebHandler = <G extends Router.Any, LE = never>(
  router: G & ServeCheck<G>,
  services: Layer.Layer<Services<G>, LE, never>,
  options?: Options
): {
  readonly handler: (request: Request) => Promise<Response>
  readonly dispose: () => Promise<void>
} => {
  const app = Layer.provideMerge(
    layer(router as any, options) as Layer.Layer<never, any, any>,
    services as Layer.Layer<any>
  )
  return HttpRouter.toWebHandler(app as any, { disableLogger: true }) as any
}
