/**
 * Sessions: an id in a signed cookie, typed data (a Schema) in a store, read and changed by handlers
 * through a request-scoped service. Use it for logins in browser apps; `Auth.sessionUser` and
 * `Csrf.synchronizer` build on it.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as HttpEffect from "effect/http/HttpEffect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as HttpError from "./HttpError.ts"
import * as Middleware from "./Middleware.ts"
import { isDevelopment } from "./internal/env.ts"
import * as Signing from "./internal/signing.ts"

/**
 * What a store keeps for one session.
 *
 * @category models
 */
export interface StoredSession {
  /** The session data, encoded as JSON by the session's Schema. */
  readonly data: string
  /** Strata's own per-session values (the CSRF token, …). */
  readonly meta: { readonly [key: string]: string }
  /** Epoch milliseconds. */
  readonly createdAt: number
  /** Epoch milliseconds; after this the session is gone (idle or absolute timeout, whichever first). */
  readonly expiresAt: number
}

/**
 * A store failed (unreachable, corrupt). Answers 503: the request cannot be served safely without
 * its session.
 *
 * @category errors
 */
export class StoreError extends HttpError.Class("SessionStoreError", {
  status: 503,
  message: "Session store unavailable"
})<{ readonly cause?: unknown }> {}

/**
 * Where sessions live. `set` is given the absolute expiry so the store can drop the record then.
 *
 * @category services
 */
export class Store extends Context.Service<
  Store,
  {
    readonly get: (id: string) => Effect.Effect<Option.Option<StoredSession>, StoreError>
    readonly set: (id: string, record: StoredSession) => Effect.Effect<void, StoreError>
    readonly delete: (id: string) => Effect.Effect<void, StoreError>
  }
>()("@strata/core/Session/Store") {}

/**
 * An in-memory store, the default for one process. Expired sessions are swept every `sweepEvery`
 * (default one minute) and never returned once expired.
 *
 * @category layers
 */
export const layerMemory = (
  options: { readonly sweepEvery?: Duration.Input | undefined } = {}
): Layer.Layer<Store> =>
  Layer.effect(Store)(
    Effect.gen(function* () {
      const records = new Map<string, StoredSession>()
      const sweep = Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.sync(() => {
          for (const [id, record] of records) if (record.expiresAt <= now) records.delete(id)
        })
      )
      yield* Effect.forkScoped(
        Effect.forever(Effect.andThen(Effect.sleep(options.sweepEvery ?? "1 minute"), sweep))
      )
      return Store.of({
        get: (id) =>
          Effect.map(Clock.currentTimeMillis, (now) => {
            const record = records.get(id)
            return record !== undefined && record.expiresAt > now ? Option.some(record) : Option.none()
          }),
        set: (id, record) => Effect.sync(() => void records.set(id, record)),
        delete: (id) => Effect.sync(() => void records.delete(id))
      })
    })
  )

/**
 * The session a handler reads and changes. Changes are saved when the handler is done, once.
 *
 * @category models
 */
export interface Handle<A> {
  /** The current id (changes on `regenerate`). Never log it: it is a bearer credential. */
  readonly id: () => string
  /** Was the session created by this request? */
  readonly isNew: () => boolean
  /** The whole data. */
  readonly data: Effect.Effect<A>
  readonly get: <K extends keyof A>(key: K) => Effect.Effect<A[K]>
  readonly set: <K extends keyof A>(key: K, value: A[K]) => Effect.Effect<void>
  readonly update: (f: (data: A) => A) => Effect.Effect<void>
  /** Resets a key to its value in an empty session. */
  readonly delete: <K extends keyof A>(key: K) => Effect.Effect<void>
  /** A new id for the same data; call it on login to stop session fixation. */
  readonly regenerate: Effect.Effect<void>
  /** Ends the session (logout): the store forgets it and the cookie is cleared. */
  readonly destroy: Effect.Effect<void>
  /** Strata's own per-session values (the CSRF token, …); not part of the typed data. */
  readonly meta: {
    readonly get: (key: string) => string | undefined
    readonly set: (key: string, value: string) => Effect.Effect<void>
  }
}

/**
 * The class a session service extends; it carries its Schema.
 *
 * @category models
 */
export interface ServiceClass<Self, Key extends string, A> extends Middleware.ServiceClass<
  Self,
  Key,
  Handle<A>
> {
  readonly schema: Schema.Codec<A, any>
  readonly empty: A
}

/**
 * Declares the app's session with the Schema of its data. Every field must have a value in an
 * empty session (make them optional or give them defaults).
 *
 * @example
 * ```ts
 * class AppSession extends Session.Service<AppSession>()("app/Session", {
 *   schema: Schema.Struct({ userId: Schema.optional(Schema.String), theme: Schema.optional(Schema.Literals(["light", "dark"])) })
 * }) {}
 * ```
 * @category constructors
 */
export const Service =
  <Self>() =>
  <const Key extends string, A>(
    key: Key,
    options: { readonly schema: Schema.Codec<A, any> }
  ): ServiceClass<Self, Key, A> => {
    const empty = Schema.decodeUnknownOption(options.schema)({})
    if (Option.isNone(empty)) throw new Error(`${key}: an empty object must decode with the session schema`)
    const service = Middleware.Service<Self, Handle<A>>()(key) as any
    service.schema = options.schema
    service.empty = empty.value
    return service
  }

/**
 * Cookie settings of a session. Defaults: name `sid`, HttpOnly, SameSite=Lax, Path=/, Secure unless
 * `NODE_ENV` is `development` or `test`.
 *
 * @category models
 */
export interface CookieOptions {
  /** Signing keys, newest first: new cookies are signed with the first, any of them is accepted. */
  readonly keys: Signing.Keys
  readonly name?: string | undefined
  readonly secure?: boolean | undefined
  readonly sameSite?: "lax" | "strict" | "none" | undefined
  readonly path?: string | undefined
  readonly domain?: string | undefined
}

/**
 * Options of the session middleware.
 *
 * @category models
 */
export interface Options {
  readonly cookie: CookieOptions
  /** A session unused this long expires (rolling expiry); default 1 day. */
  readonly idleTimeout?: Duration.Input | undefined
  /** A session expires this long after it was created, however active; default 7 days. */
  readonly absoluteTimeout?: Duration.Input | undefined
  /**
   * A request that changes nothing extends the idle expiry only when this much of it has passed
   * since the last save; default a tenth of the idle timeout. Saves a write per request.
   */
  readonly touchAfter?: Duration.Input | undefined
}

/**
 * Reads the session key list from `Config` (`SESSION_KEYS`, comma-separated, newest first), so a
 * server can rotate keys without code.
 *
 * @category constructors
 */
export const keysFromConfig = (
  name = "SESSION_KEYS"
): Config.Config<ReadonlyArray<Redacted.Redacted<string>>> =>
  Config.map(Config.Redacted(name), (value) =>
    Redacted.value(value)
      .split(",")
      .map((key) => Redacted.make(key.trim()))
  )

/**
 * The session middleware: provides `service` to what runs inside. A tampered, expired or foreign
 * cookie is treated as no cookie: the request gets a new, empty session.
 *
 * @category middleware
 */
export const middleware = <Self, Key extends string, A>(
  service: ServiceClass<Self, Key, A>,
  options: Options
) => {
  const keys = Signing.keyList(options.cookie.keys)
  const cookieName = options.cookie.name ?? "sid"
  const idle = Duration.toMillis(Duration.fromInputUnsafe(options.idleTimeout ?? "1 day"))
  const absolute = Duration.toMillis(Duration.fromInputUnsafe(options.absoluteTimeout ?? "7 days"))
  const touchAfter = Duration.toMillis(
    Duration.fromInputUnsafe(options.touchAfter ?? Duration.millis(idle / 10))
  )
  const cookieOptions = {
    httpOnly: true,
    secure: options.cookie.secure ?? !isDevelopment(),
    sameSite: options.cookie.sameSite ?? "lax",
    path: options.cookie.path ?? "/",
    ...(options.cookie.domain === undefined ? {} : { domain: options.cookie.domain })
  } as const
  const json = Schema.toCodecJson(service.schema)
  const decode = Schema.decodeUnknownOption(json)
  const encode = Schema.encodeUnknownOption(json)
  const serialize = (data: A): string => JSON.stringify(Option.getOrThrow(encode(data)))
  const deserialize = (text: string): A | undefined => {
    try {
      return Option.getOrUndefined(decode(JSON.parse(text)))
    } catch {
      return undefined
    }
  }

  return Middleware.effect({
    name: "session",
    provides: [service],
    raises: ["SessionStoreError"],
    build: Effect.map(
      Store,
      (store) => (next) =>
        Effect.gen(function* () {
          const request = yield* HttpServerRequest.HttpServerRequest
          const now = yield* Clock.currentTimeMillis
          const signed = request.cookies[cookieName]
          const incomingId = signed === undefined ? undefined : Signing.unsign(signed, keys)
          const loaded =
            incomingId === undefined ? Option.none<StoredSession>() : yield* store.get(incomingId)
          const loadedData = Option.isSome(loaded) ? deserialize(loaded.value.data) : undefined
          const existing =
            Option.isSome(loaded) && loadedData !== undefined && loaded.value.createdAt + absolute > now

          const state = {
            id: existing ? incomingId! : Signing.randomToken(),
            isNew: !existing,
            data: existing ? loadedData! : service.empty,
            meta: existing ? { ...loaded.value.meta } : ({} as { [key: string]: string }),
            createdAt: existing ? loaded.value.createdAt : now,
            savedExpiresAt: existing ? loaded.value.expiresAt : 0,
            changed: false,
            regenerated: false,
            destroyed: false,
            // The id the client holds and the store knows, if any; dropped from the store on regenerate.
            previousId: existing ? incomingId : undefined,
            cookieMaxAge: absolute
          }

          const handle: Handle<A> = {
            id: () => state.id,
            isNew: () => state.isNew,
            data: Effect.sync(() => state.data),
            get: (key) => Effect.sync(() => state.data[key]),
            set: (key, value) =>
              Effect.sync(() => {
                state.data = { ...state.data, [key]: value }
                state.changed = true
              }),
            update: (f) =>
              Effect.sync(() => {
                state.data = f(state.data)
                state.changed = true
              }),
            delete: (key) =>
              Effect.sync(() => {
                state.data = { ...state.data, [key]: service.empty[key] }
                state.changed = true
              }),
            regenerate: Effect.sync(() => {
              state.id = Signing.randomToken()
              state.regenerated = true
              state.changed = true
            }),
            destroy: Effect.sync(() => {
              state.destroyed = true
            }),
            meta: {
              get: (key) => state.meta[key],
              set: (key, value) =>
                Effect.sync(() => {
                  state.meta[key] = value
                  state.changed = true
                })
            }
          }

          const commit = Effect.gen(function* () {
            const at = yield* Clock.currentTimeMillis
            if (state.destroyed) {
              if (state.previousId !== undefined) yield* store.delete(state.previousId)
              if (state.regenerated) yield* store.delete(state.id)
              // Clear the cookie only if the client has one.
              return signed === undefined ? undefined : ("clear" as const)
            }
            const expiresAt = Math.min(at + idle, state.createdAt + absolute)
            state.cookieMaxAge = state.createdAt + absolute - at
            const touch = !state.isNew && at - (state.savedExpiresAt - idle) >= touchAfter
            if (state.changed || touch) {
              if (state.regenerated && state.previousId !== undefined) yield* store.delete(state.previousId)
              yield* store.set(state.id, {
                data: serialize(state.data),
                meta: state.meta,
                createdAt: state.createdAt,
                expiresAt
              })
            }
            // A new session nobody wrote to is not stored, and gets no cookie.
            if ((state.isNew && state.changed) || state.regenerated) return "set" as const
            return undefined
          })

          const exit = yield* Effect.exit(Effect.provideService(next, service, handle))
          const cookie = yield* commit
          if (cookie !== undefined) {
            yield* HttpEffect.appendPreResponseHandler((_request, response) =>
              Effect.succeed(
                cookie === "clear"
                  ? HttpServerResponse.expireCookieUnsafe(response, cookieName, cookieOptions)
                  : HttpServerResponse.setCookieUnsafe(response, cookieName, Signing.sign(state.id, keys), {
                      ...cookieOptions,
                      maxAge: Duration.millis(Math.max(0, state.cookieMaxAge))
                    })
              )
            )
          }
          return yield* exit
        })
    )
  })
}
