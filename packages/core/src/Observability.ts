/**
 * Metrics and tracing per route through Effect's `Metric` and `Tracer`: a request counter and a
 * duration histogram labelled by method, route pattern and status, and a span named by the route.
 * Export both to OpenTelemetry with `@effect/opentelemetry` (see the package README).
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpError from "./HttpError.ts"
import * as Middleware from "./Middleware.ts"

/**
 * Requests served, by `http.request.method`, `http.route` and `http.response.status_code`.
 *
 * @category metrics
 */
export const requests = Metric.counter("http.server.requests", {
  description: "HTTP requests served",
  incremental: true
})

/**
 * Request duration in seconds (OpenTelemetry's `http.server.request.duration` and its boundaries).
 *
 * @category metrics
 */
export const duration = Metric.histogram("http.server.request.duration", {
  description: "Duration of HTTP server requests, in seconds",
  boundaries: [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
})

const statusOf = (exit: Exit.Exit<{ readonly status: number }, unknown>) =>
  Exit.isSuccess(exit)
    ? Effect.succeed(exit.value.status)
    : Cause.hasInterruptsOnly(exit.cause)
      ? Effect.succeed(499)
      : Effect.map(HttpError.responseOf(exit.cause), ({ response }) => response.status)

/**
 * Counts each request and records its duration, labelled by the route pattern (`/users/:id`, never
 * the raw path, so label cardinality stays bounded).
 *
 * @category middleware
 */
export const metrics = () =>
  Middleware.make({
    name: "metrics",
    apply: (next) =>
      Effect.gen(function* () {
        const request = yield* HttpServerRequest.HttpServerRequest
        const { route } = yield* HttpRouter.RouteContext
        const start = yield* Clock.currentTimeNanos
        const exit = yield* Effect.exit(next)
        const seconds = Number((yield* Clock.currentTimeNanos) - start) / 1e9
        const attributes = {
          "http.request.method": request.method,
          "http.route": route.path,
          "http.response.status_code": String(yield* statusOf(exit))
        }
        yield* Metric.update(Metric.withAttributes(requests, attributes), 1)
        yield* Metric.update(Metric.withAttributes(duration, attributes), seconds)
        return yield* exit
      })
  })

/**
 * Runs what is inside in a span named `METHOD /route/:pattern` with the route, method and status as
 * attributes; a child of the server span Effect's HTTP server opens for each request.
 *
 * @category middleware
 */
export const tracing = () =>
  Middleware.make({
    name: "tracing",
    apply: (next) =>
      Effect.gen(function* () {
        const request = yield* HttpServerRequest.HttpServerRequest
        const { route } = yield* HttpRouter.RouteContext
        return yield* Effect.withSpan(
          Effect.tap(next, (response) =>
            Effect.annotateCurrentSpan("http.response.status_code", response.status)
          ),
          `${request.method} ${route.path}`,
          { attributes: { "http.route": route.path, "http.request.method": request.method } }
        )
      })
  })
