/**
 * Request ids: each request gets one (the caller's `x-request-id` when it is well-formed, a fresh
 * UUID otherwise), handlers read it as a service, logs inside carry it and every response has it.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as HttpEffect from "effect/http/HttpEffect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Middleware from "./Middleware.ts"

/**
 * The id of the current request.
 *
 * @category services
 */
export class RequestId extends Middleware.Service<RequestId, string>()("@strata/core/RequestId") {}

/**
 * Options of the request id middleware.
 *
 * @category models
 */
export interface Options {
  /** The header read and written; default `x-request-id`. */
  readonly header?: string | undefined
  /** Use the caller's id when it is well-formed; default true. Turn off at a trust boundary. */
  readonly trustIncoming?: boolean | undefined
  /** Makes a new id; default `crypto.randomUUID`. */
  readonly generate?: (() => string) | undefined
}

// Ids go into logs and headers: a bounded, plain alphabet keeps log injection out.
const wellFormed = /^[A-Za-z0-9._:@/+=-]{1,128}$/

/**
 * Provides `RequestId`, annotates every log line inside with `requestId`, and sets the header on
 * every response, error responses included.
 *
 * @category middleware
 */
export const middleware = (options: Options = {}) => {
  const header = (options.header ?? "x-request-id").toLowerCase()
  const trust = options.trustIncoming ?? true
  const generate = options.generate ?? (() => crypto.randomUUID())
  return Middleware.make({
    name: "requestId",
    provides: [RequestId],
    apply: (next) =>
      Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
        const incoming = trust ? request.headers[header] : undefined
        const id = incoming !== undefined && wellFormed.test(incoming) ? incoming : generate()
        return next.pipe(
          Effect.provideService(RequestId, id),
          Effect.annotateLogs("requestId", id),
          HttpEffect.withPreResponseHandler((_request, response) =>
            Effect.succeed(HttpServerResponse.setHeader(response, header, id))
          )
        )
      })
  })
}
