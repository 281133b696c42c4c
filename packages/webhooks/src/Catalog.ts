/**
 * The event catalog: each event `type` with the Schema of its `data`, shared by the sender and the
 * receiver so an unknown type or a wrong payload does not compile on either side.
 *
 * The wire body is the Standard Webhooks envelope `{ "type", "timestamp", "data" }` (timestamp an ISO
 * 8601 string). Decoding fails with `UnknownEventType` or `InvalidPayload`, both 400.
 *
 * @since 0.1.0
 */
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"
import { HttpError } from "@strata/core"

/**
 * @category type ids
 */
export const TypeId = "~@strata/webhooks/Catalog" as const

/**
 * What a catalog is made of: event type → Schema of its `data`. The Schemas need no services to
 * decode or encode, so both sides can use them anywhere.
 *
 * @category models
 */
export type Events = { readonly [type: string]: Schema.Codec<any, any> }

/**
 * A catalog of events.
 *
 * @category models
 */
export interface Catalog<E extends Events> {
  readonly [TypeId]: typeof TypeId
  readonly events: E
  /** The event types, in the order given (plain strings, so any catalog is a `Catalog.Any`). */
  readonly types: ReadonlyArray<string>
}

/**
 * Any catalog.
 *
 * @category models
 */
export type Any = Catalog<Events>

/**
 * The event types of a catalog's events.
 *
 * @category models
 */
export type Type<E extends Events> = keyof E & string

/**
 * The `data` of the event `K`.
 *
 * @category models
 */
export type Data<E extends Events, K extends Type<E>> = E[K]["Type"]

/**
 * One decoded event: a union over the catalog's types, so narrowing on `type` gives the `data` of
 * that type.
 *
 * @category models
 */
export type Event<E extends Events> = {
  readonly [K in Type<E>]: {
    readonly type: K
    readonly timestamp: DateTime.Utc
    readonly data: E[K]["Type"]
  }
}[Type<E>]

/**
 * The events of a catalog value.
 *
 * @category models
 */
export type EventsOf<C> = C extends Catalog<infer E> ? E : never

/**
 * Makes a catalog.
 *
 * @example
 * ```ts
 * const events = Catalog.make({
 *   "user.created": Schema.Struct({ id: Schema.String, email: Schema.String }),
 *   "user.deleted": Schema.Struct({ id: Schema.String })
 * })
 * ```
 * @category constructors
 */
export const make = <const E extends Events>(events: E): Catalog<E> => ({
  [TypeId]: TypeId,
  events,
  types: Object.keys(events)
})

/**
 * Is `type` one of the catalog's event types?
 *
 * @category guards
 */
export const has = <E extends Events>(catalog: Catalog<E>, type: string): type is Type<E> =>
  Object.hasOwn(catalog.events, type)

/**
 * The JSON body of an event: `{ type, timestamp, data }`, with `data` encoded by its Schema. Pass
 * `timestamp` to control the time written (tests, retries of a stored message); otherwise it is
 * now. Throws a `SchemaError` when `data` fails a Schema check the types cannot express; use
 * `encodeEffect` to get that as a failure.
 *
 * @example
 * ```ts
 * const body = Catalog.encode(events, "user.created", { id: "u_1", email: "ada@example.com" })
 * ```
 * @category encoding
 */
export const encode = <E extends Events, K extends Type<E>>(
  catalog: Catalog<E>,
  type: K,
  data: Data<E, K>,
  options?: { readonly timestamp?: Date | DateTime.Utc | undefined }
): string => {
  const schema = catalog.events[type]
  if (schema === undefined) throw new Error(`event type ${type} is not in the catalog`)
  const timestamp = options?.timestamp ?? new Date()
  return JSON.stringify({
    type,
    timestamp: DateTime.isDateTime(timestamp) ? DateTime.formatIso(timestamp) : timestamp.toISOString(),
    data: Schema.encodeSync(schema)(data)
  })
}

/**
 * `encode` as an effect: the time is read from Effect's `Clock` unless given, and a Schema check
 * failure is a `SchemaError`.
 *
 * @category encoding
 */
export const encodeEffect = <E extends Events, K extends Type<E>>(
  catalog: Catalog<E>,
  type: K,
  data: Data<E, K>,
  options?: { readonly timestamp?: Date | DateTime.Utc | undefined }
): Effect.Effect<string, Schema.SchemaError> =>
  Effect.gen(function* () {
    const schema = catalog.events[type]
    if (schema === undefined) return yield* Effect.die(new Error(`event type ${type} is not in the catalog`))
    const timestamp = options?.timestamp ?? (yield* DateTime.now)
    const encoded = yield* Schema.encodeEffect(schema)(data)
    return JSON.stringify({
      type,
      timestamp: DateTime.isDateTime(timestamp) ? DateTime.formatIso(timestamp) : timestamp.toISOString(),
      data: encoded
    })
  })

/**
 * The event's `type` is not in the catalog. 400.
 *
 * @category errors
 */
export class UnknownEventType extends HttpError.Class("UnknownEventType", {
  status: 400,
  message: "The event type is not one this endpoint accepts",
  body: (e: { readonly type: string }) => ({ type: e.type })
})<{ readonly type: string }> {}

/**
 * The body is not JSON, not an envelope, or its `data` does not match the type's Schema. 400, with a
 * field-level report.
 *
 * @category errors
 */
export class InvalidPayload extends HttpError.Class("InvalidPayload", {
  status: 400,
  message: (e: { readonly reason: string }) => e.reason,
  body: (e: { readonly issues: ReadonlyArray<Issue> }) => (e.issues.length === 0 ? {} : { issues: e.issues })
})<{ readonly reason: string; readonly issues: ReadonlyArray<Issue> }> {}

/**
 * One field-level problem of an `InvalidPayload`.
 *
 * @category models
 */
export interface Issue {
  readonly path: string
  readonly message: string
}

/**
 * Every way decoding fails.
 *
 * @category errors
 */
export type DecodeError = UnknownEventType | InvalidPayload

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

const issuesOf = (error: Schema.SchemaError, prefix: string): ReadonlyArray<Issue> =>
  formatter(error.issue).issues.map((issue) => ({
    path: [prefix, ...(issue.path ?? []).map((p) => (typeof p === "object" ? String(p.key) : String(p)))]
      .filter((part) => part !== "")
      .join("."),
    message: issue.message
  }))

const isRecord = (u: unknown): u is Readonly<Record<string, unknown>> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

// A hostile type string is cut before it goes back into an error body or a log line.
const shorten = (type: string): string => (type.length > 100 ? `${type.slice(0, 100)}…` : type)

/**
 * Decodes the parts of an event that another envelope carried (Stripe's `type`/`created`/`data`,
 * GitHub's `X-GitHub-Event` header and body): the type must be in the catalog and the data match its
 * Schema.
 *
 * @category decoding
 */
export const decodeParts = <E extends Events>(
  catalog: Catalog<E>,
  parts: { readonly type: unknown; readonly timestamp: DateTime.Utc; readonly data: unknown }
): Effect.Effect<Event<E>, DecodeError> => {
  const { type, timestamp, data } = parts
  if (typeof type !== "string")
    return Effect.fail(
      new InvalidPayload({
        reason: "The event has no type",
        issues: [{ path: "type", message: "Expected a string" }]
      })
    )
  if (!has(catalog, type)) return Effect.fail(new UnknownEventType({ type: shorten(type) }))
  return Schema.decodeUnknownEffect(catalog.events[type]!, { errors: "all" })(data).pipe(
    Effect.mapError(
      (error) =>
        new InvalidPayload({
          reason: "The event data does not match the expected shape",
          issues: issuesOf(error, "data")
        })
    ),
    Effect.map((decoded) => ({ type, timestamp, data: decoded }) as Event<E>)
  )
}

/**
 * Decodes a JSON body `{ type, timestamp, data }`: fails with `UnknownEventType` when the type is not
 * in the catalog and `InvalidPayload` when the body is not JSON, the envelope is wrong or the data
 * does not match the type's Schema.
 *
 * @category decoding
 */
export const decode = <E extends Events>(
  catalog: Catalog<E>,
  body: string | Uint8Array
): Effect.Effect<Event<E>, DecodeError> => {
  let json: unknown
  try {
    json = JSON.parse(
      typeof body === "string" ? body : new TextDecoder("utf-8", { fatal: true }).decode(body)
    )
  } catch {
    return Effect.fail(new InvalidPayload({ reason: "The body is not valid JSON", issues: [] }))
  }
  if (!isRecord(json))
    return Effect.fail(new InvalidPayload({ reason: "The body is not a JSON object", issues: [] }))
  const timestamp = typeof json["timestamp"] === "string" ? DateTime.make(json["timestamp"]) : undefined
  if (timestamp === undefined || timestamp._tag === "None")
    return Effect.fail(
      new InvalidPayload({
        reason: "The event has no valid timestamp",
        issues: [{ path: "timestamp", message: "Expected an ISO 8601 date-time string" }]
      })
    )
  return decodeParts(catalog, {
    type: json["type"],
    timestamp: DateTime.toUtc(timestamp.value),
    data: json["data"]
  })
}
