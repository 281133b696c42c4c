/**
 * Errors that know their HTTP response. Strata's own errors (Unauthorized, Forbidden, …) are built
 * here, and an app declares its own with `HttpError.Class` so they count as mapped at serve.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as ErrorReporter from "effect/ErrorReporter"
import * as Option from "effect/Option"
import type * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"
import type * as Types from "effect/Types"
import * as HttpServerRespondable from "effect/http/HttpServerRespondable"
import * as HttpServerResponse from "effect/http/HttpServerResponse"

/**
 * An error with a response of its own. Every error that can leave a served app must be one (or be
 * answered by a middleware that handles it); the compiler checks this at serve.
 *
 * @category models
 */
export type Respondable = HttpServerRespondable.Respondable

/**
 * The body Strata's errors answer with: the error's tag and a message written for the client.
 *
 * @category models
 */
export interface Body {
  readonly error: string
  readonly message: string
  readonly [key: string]: unknown
}

/**
 * What an error class declares about its response.
 *
 * @category models
 */
export interface ResponseOptions<A> {
  /** The status code. */
  readonly status: number
  /** The message sent to the client; never put secrets or internals here. */
  readonly message?: string | ((error: A) => string) | undefined
  /** Extra headers (`WWW-Authenticate`, `Retry-After`, …). */
  readonly headers?: ((error: A) => Record<string, string>) | undefined
  /** Extra fields of the JSON body (a field-level report, …). */
  readonly body?: ((error: A) => Record<string, unknown>) | undefined
}

/**
 * The class `HttpError.Class` returns.
 *
 * @category models
 */
export interface HttpErrorClass<Tag extends string> {
  new <A extends Record<string, any> = {}>(
    args: Types.VoidIfEmpty<{ readonly [P in keyof A as P extends "_tag" ? never : P]: A[P] }>
  ): Cause.YieldableError & { readonly _tag: Tag; readonly status: number } & Readonly<A> & Respondable
}

/**
 * Declares an error class with its response: `yield*` it in a handler or middleware and the client
 * gets that status and a JSON body `{ error, message }`.
 *
 * @example
 * ```ts
 * class NoteNotFound extends HttpError.Class("NoteNotFound", { status: 404, message: "no such note" })<{
 *   readonly id: string
 * }> {}
 * ```
 * @category constructors
 */
export const Class = <const Tag extends string>(
  tag: Tag,
  options: ResponseOptions<any>
): HttpErrorClass<Tag> => {
  const message = options.message
  const expected = options.status < 500
  class Base extends Data.TaggedError(tag)<Record<string, unknown>> {
    constructor(args: Record<string, unknown>) {
      // A 4xx is an answer, not a fault: its stack is never shown, and capturing one was the
      // largest cost of a rejected request (a 401 flood spent 18% of its time here).
      if (!expected) {
        super(args)
        return
      }
      const limit = Error.stackTraceLimit
      Error.stackTraceLimit = 0
      try {
        super(args)
      } finally {
        Error.stackTraceLimit = limit
      }
    }
    get status() {
      return options.status
    }
    // A 4xx is the client's mistake, answered as designed: nothing for an error reporter.
    override get [ErrorReporter.ignore]() {
      return expected
    }
    [HttpServerRespondable.symbol]() {
      return Effect.succeed(respond(this, tag, options.status, message, options.headers, options.body))
    }
  }
  return Base as any
}

const respond = <A>(
  error: A,
  tag: string,
  status: number,
  message: ResponseOptions<A>["message"],
  headers: ResponseOptions<A>["headers"],
  body: ResponseOptions<A>["body"]
): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.jsonUnsafe(
    {
      ...body?.(error),
      error: tag,
      message: typeof message === "function" ? message(error) : (message ?? defaultMessages[status] ?? tag)
    } satisfies Body,
    headers === undefined ? { status } : { status, headers: headers(error) }
  )

const defaultMessages: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  409: "Conflict",
  413: "Payload Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable",
  504: "Gateway Timeout"
}

/**
 * The request is malformed; `issues` (if any) say which fields and why.
 *
 * @category errors
 */
export class BadRequest extends Class("BadRequest", {
  status: 400,
  message: (e: { readonly reason: string }) => e.reason,
  body: (e: { readonly issues?: ReadonlyArray<unknown> }) =>
    e.issues === undefined ? {} : { issues: e.issues }
})<{
  readonly reason: string
  readonly issues?: ReadonlyArray<{ readonly path: string; readonly message: string }>
}> {}

const standardFormatter = SchemaIssue.makeFormatterStandardSchemaV1()

/**
 * A 400 with a field-level report of a Schema decoding failure: each issue's path (`items.0.name`)
 * and message. Decode with `{ errors: "all" }` to report every field, not only the first.
 *
 * @category constructors
 */
export const fromSchemaError = (error: Schema.SchemaError): BadRequest =>
  new BadRequest({
    reason: "The request does not match the expected shape",
    issues: standardFormatter(error.issue).issues.map((issue) => ({
      path: (issue.path ?? []).map((p) => (typeof p === "object" ? String(p.key) : String(p))).join("."),
      message: issue.message
    }))
  })

/**
 * Turns the `SchemaError` of an effect into `BadRequest` (400 with a field-level report).
 *
 * @example
 * ```ts
 * const input = yield* HttpServerRequest.schemaBodyJson(NoteInput, { errors: "all" }).pipe(HttpError.mapSchemaError)
 * ```
 * @category combinators
 */
export const mapSchemaError = <A, E, R>(
  self: Effect.Effect<A, E, R>
): Effect.Effect<A, Exclude<E, Schema.SchemaError> | BadRequest, R> =>
  Effect.mapError(self, (error) =>
    typeof error === "object" && error !== null && (error as { _tag?: unknown })._tag === "SchemaError"
      ? fromSchemaError(error as unknown as Schema.SchemaError)
      : (error as Exclude<E, Schema.SchemaError>)
  )

/**
 * No valid credentials. `challenge` becomes the `WWW-Authenticate` header (`Bearer realm="api"`).
 *
 * @category errors
 */
export class Unauthorized extends Class("Unauthorized", {
  status: 401,
  headers: (e: { readonly challenge?: string }): Record<string, string> =>
    e.challenge === undefined ? {} : { "www-authenticate": e.challenge }
})<{
  readonly challenge?: string
  /** Why, for logs and tests; not sent to the client. */
  readonly reason?: string
}> {}

/**
 * Authenticated but not allowed.
 *
 * @category errors
 */
export class Forbidden extends Class("Forbidden", { status: 403 })<{
  /** Why, for logs and tests; not sent to the client. */
  readonly reason?: string
}> {}

/**
 * Nothing at this address.
 *
 * @category errors
 */
export class NotFound extends Class("NotFound", { status: 404 })<{}> {}

/**
 * The body is larger than the limit.
 *
 * @category errors
 */
export class PayloadTooLarge extends Class("PayloadTooLarge", {
  status: 413,
  body: (e: { readonly limit: number }) => ({ limit: e.limit })
})<{ readonly limit: number }> {}

/**
 * Too many requests; `retryAfter` seconds become the `Retry-After` header.
 *
 * @category errors
 */
export class RateLimited extends Class("RateLimited", {
  status: 429,
  headers: (e: { readonly retryAfter: number }) => ({
    "retry-after": String(Math.max(0, Math.ceil(e.retryAfter)))
  })
})<{ readonly retryAfter: number }> {}

/**
 * The response a failure gets: an error's own response when it has one; otherwise (a defect, an
 * untyped error) a 500 whose body says nothing about it. `unexpected` tells which.
 *
 * @category models
 */
export const responseOf = (
  cause: Cause.Cause<unknown>
): Effect.Effect<{
  readonly response: HttpServerResponse.HttpServerResponse
  readonly unexpected: boolean
}> => {
  const error = Cause.findErrorOption(cause)
  if (Option.isSome(error) && HttpServerRespondable.isRespondable(error.value) && !Cause.hasDies(cause)) {
    return Effect.map(HttpServerRespondable.toResponse(error.value), (response) => ({
      response,
      unexpected: false
    }))
  }
  return Effect.succeed({ response: internalError(undefined), unexpected: true })
}

/**
 * The 500 Strata answers to what it did not expect; with the request id when there is one.
 *
 * @category models
 */
export const internalError = (requestId: string | undefined): HttpServerResponse.HttpServerResponse =>
  HttpServerResponse.jsonUnsafe(
    requestId === undefined
      ? { error: "InternalServerError", message: "Internal Server Error" }
      : { error: "InternalServerError", message: "Internal Server Error", requestId },
    { status: 500 }
  )

/**
 * The body's media type is not one the route accepts.
 *
 * @category errors
 */
export class UnsupportedMediaType extends Class("UnsupportedMediaType", {
  status: 415,
  body: (e: { readonly accepted: ReadonlyArray<string> }) => ({ accepted: e.accepted })
})<{ readonly accepted: ReadonlyArray<string> }> {}

/**
 * The server cannot answer now (overloaded, a dependency down, a timeout chosen to answer 503).
 *
 * @category errors
 */
export class ServiceUnavailable extends Class("ServiceUnavailable", {
  status: 503,
  headers: (e: { readonly retryAfter?: number }): Record<string, string> =>
    e.retryAfter === undefined ? {} : { "retry-after": String(Math.max(0, Math.ceil(e.retryAfter))) }
})<{ readonly retryAfter?: number; readonly reason?: string }> {}

/**
 * The handler took longer than its deadline.
 *
 * @category errors
 */
export class GatewayTimeout extends Class("GatewayTimeout", { status: 504 })<{ readonly reason?: string }> {}

/**
 * The client took too long to send its request (its body).
 *
 * @category errors
 */
export class RequestTimeout extends Class("RequestTimeout", {
  status: 408,
  // The body may be half-read: the connection cannot carry another request.
  headers: () => ({ connection: "close" })
})<{ readonly reason?: string }> {}
