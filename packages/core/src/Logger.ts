/**
 * The request log: one structured line per request through Effect's Logger, with method, path,
 * status, duration and request id; failures that become 5xx are logged with their cause.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpError from "./HttpError.ts"
import * as Middleware from "./Middleware.ts"
import { RequestId } from "./RequestId.ts"

/**
 * Options of the request log.
 *
 * @category models
 */
export interface Options {
  /** The message of each line; default `"request"`. */
  readonly message?: string | undefined
  /** Requests not to log (health checks, …). */
  readonly skip?: ((request: HttpServerRequest.HttpServerRequest) => boolean) | undefined
}

const pathOf = (url: string): string => {
  // The query string can carry tokens: only the path is logged.
  const end = url.search(/[?#]/)
  return end === -1 ? url : url.slice(0, end)
}

/**
 * Logs one line per request. It requires `RequestId`, so it goes after the request id middleware:
 * that way a request refused by auth still has its id in the log line.
 *
 * @category middleware
 */
export const middleware = (options: Options = {}) => {
  const message = options.message ?? "request"
  return Middleware.make({
    name: "logger",
    requires: [RequestId],
    apply: (next) =>
      Effect.gen(function* () {
        const request = yield* HttpServerRequest.HttpServerRequest
        if (options.skip?.(request)) return yield* next
        const requestId = yield* RequestId
        const start = yield* Clock.currentTimeNanos
        const exit = yield* Effect.exit(next)
        const durationMs = Number((yield* Clock.currentTimeNanos) - start) / 1e6
        const status = Exit.isSuccess(exit)
          ? exit.value.status
          : Cause.hasInterruptsOnly(exit.cause)
            ? 499
            : (yield* HttpError.responseOf(exit.cause)).response.status
        const annotations = {
          "http.method": request.method,
          "http.path": pathOf(request.url),
          "http.status": status,
          durationMs: Math.round(durationMs * 1000) / 1000,
          requestId,
          // The client's address (the forwarded one behind TrustedProxy.middleware).
          "client.address": Option.getOrUndefined(request.remoteAddress)
        }
        const log =
          status < 500
            ? Effect.logInfo(message)
            : Exit.isFailure(exit) && !Cause.hasInterruptsOnly(exit.cause)
              ? Effect.logError(message, exit.cause)
              : Effect.logError(message)
        yield* Effect.annotateLogs(log, annotations)
        return yield* exit
      })
  })
}
