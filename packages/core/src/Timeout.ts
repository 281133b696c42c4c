/**
 * Deadlines for handlers: past it the handler is interrupted (its finalizers run, its resources are
 * released) and the client gets 504 or 503, as chosen.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HttpError from "./HttpError.ts"
import * as Middleware from "./Middleware.ts"

/**
 * Options of the timeout middleware.
 *
 * @category models
 */
export interface Options {
  /** The deadline for what runs inside, from when the middleware is reached. */
  readonly after: Duration.Input
  /** 504 Gateway Timeout (default) or 503 Service Unavailable. */
  readonly status?: 503 | 504 | undefined
}

/**
 * Interrupts what runs inside after `after` and answers 504 (or 503). Put it inside the logger, so
 * the timed-out request is logged with its status.
 *
 * @category middleware
 */
export const middleware = (options: Options) => {
  const after = Duration.fromInputUnsafe(options.after)
  const reason = `no response within ${Duration.format(after)}`
  const error = () =>
    options.status === 503
      ? new HttpError.ServiceUnavailable({ reason })
      : new HttpError.GatewayTimeout({ reason })
  return Middleware.make({
    name: "timeout",
    raises: options.status === 503 ? ["ServiceUnavailable"] : ["GatewayTimeout"],
    apply: (next) => Effect.timeoutOrElse(next, { duration: after, orElse: () => Effect.fail(error()) })
  })
}
