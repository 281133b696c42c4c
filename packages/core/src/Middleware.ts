/**
 * Typed middleware: a function around route handlers that declares which request-scoped services it
 * provides, which it requires from outside, which typed errors it raises and which it handles.
 * Use it to give handlers request data (Session, CurrentUser, …) that the compiler checks.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Data from "effect/Data"
import * as Exit from "effect/Exit"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import type * as Types from "effect/Types"
import type * as HttpRouter from "effect/http/HttpRouter"
import * as HttpEffect from "effect/http/HttpEffect"
import * as HttpServerRespondable from "effect/http/HttpServerRespondable"
import * as HttpServerResponse from "effect/http/HttpServerResponse"

/**
 * The property that marks a service as request-scoped. A request-scoped service may only reach a
 * handler through a middleware on the handler's route; an app-wide layer cannot satisfy it.
 *
 * @category models
 */
export const RequestScopedId = "~@strata/core/RequestScoped" as const

/**
 * The marker a request-scoped service's identifier carries.
 *
 * @category models
 */
export interface RequestScoped {
  readonly [RequestScopedId]: typeof RequestScopedId
}

/**
 * The class a request-scoped service extends.
 *
 * @category models
 */
export interface ServiceClass<Self, Key extends string, Shape> extends Context.Service<Self, Shape> {
  new (_: never): Context.ServiceClass.Shape<Key, Shape> & RequestScoped
  readonly key: Key
}

/**
 * Declares a request-scoped service: data a middleware computes for each request and handlers read
 * with `yield*`. Unlike a plain `Context.Service`, leaving it unprovided — or providing it with an
 * app-wide `Layer.succeed` — does not compile when the app is served.
 *
 * @example
 * ```ts
 * class CurrentUser extends Middleware.Service<CurrentUser, { readonly id: string }>()("app/CurrentUser") {}
 * ```
 * @category constructors
 */
export const Service =
  <Self, Shape>() =>
  <const Key extends string>(key: Key): ServiceClass<Self, Key, Shape> =>
    Context.Service<Self, Shape>()(key) as unknown as ServiceClass<Self, Key, Shape>

/**
 * The readable name of a service identifier, for compile-time messages.
 *
 * @category models
 */
export type KeyOf<S> = S extends { readonly key: infer K extends string } ? K : "(a service without a key)"

/**
 * The tag of an error, for the handled-error bookkeeping.
 *
 * @category models
 */
export type TagOf<E> = E extends { readonly _tag: infer T extends string } ? T : never

/**
 * Removes the errors whose `_tag` is in `Tags`.
 *
 * @category models
 */
export type ExcludeTags<E, Tags> = [Tags] extends [never] ? E : Exclude<E, { readonly _tag: Tags }>

/**
 * What one entry of a stack says about itself; the manifest is built from these.
 *
 * @category models
 */
export interface Info {
  readonly name: string
  readonly provides: ReadonlyArray<string>
  readonly requires: ReadonlyArray<string>
  readonly raises: ReadonlyArray<string>
  readonly handles: ReadonlyArray<string>
}

/**
 * The function a middleware wraps a handler with.
 *
 * @category models
 */
export type Wrap = (
  next: Effect.Effect<HttpServerResponse.HttpServerResponse, any, any>
) => Effect.Effect<HttpServerResponse.HttpServerResponse, any, any>

/**
 * One middleware as the runtime sees it: its description and the effect that builds its wrapper
 * once, when the app's layer is built.
 *
 * @category models
 */
export interface Entry {
  readonly info: Info
  readonly build: Effect.Effect<Wrap, any, any>
}

/**
 * @category type ids
 */
export const TypeId = "~@strata/core/Middleware" as const

/**
 * A middleware or an ordered stack of them (a stack is a middleware too). The first entry runs
 * outermost: it sees the request first and the response last.
 *
 * - `P`: request-scoped services it provides to what runs inside it
 * - `R`: request services it requires from what runs outside it
 * - `E`: typed errors it raises
 * - `H`: tags of the errors it handles (turns into responses) from inside
 * - `LE`, `LR`: error and requirements of building it (stores, keys, …), met by the app's layer
 *
 * @category models
 */
export interface Middleware<
  out P,
  out R,
  out E,
  out H = never,
  out LE = never,
  out LR = never
> extends Pipeable {
  readonly [TypeId]: typeof TypeId
  readonly "~types": {
    readonly P: P
    readonly R: R
    readonly E: E
    readonly H: H
    readonly LE: LE
    readonly LR: LR
  }
  readonly entries: ReadonlyArray<Entry>
}

/**
 * Any middleware.
 *
 * @category models
 */
export type Any = Middleware<any, any, any, any, any, any>

/**
 * The middleware that does nothing; the unit of composition.
 *
 * @category models
 */
export type Identity = Middleware<never, never, never, never, never, never>

/**
 * @category models
 */
export declare namespace Middleware {
  /** Services a middleware provides. */
  export type Provides<M extends Any> = M["~types"]["P"]
  /** Request services a middleware requires from outside. */
  export type Requires<M extends Any> = M["~types"]["R"]
  /** Errors a middleware raises. */
  export type Error<M extends Any> = M["~types"]["E"]
  /** Tags of the errors a middleware handles. */
  export type Handles<M extends Any> = M["~types"]["H"]
  /** Error of building a middleware. */
  export type LayerError<M extends Any> = M["~types"]["LE"]
  /** Requirements of building a middleware. */
  export type LayerRequires<M extends Any> = M["~types"]["LR"]
}

/**
 * `Outer` wrapping `Inner`: what the pair provides, requires, raises and handles.
 *
 * @category models
 */
export type Compose<Outer extends Any, Inner extends Any> = Middleware<
  Outer["~types"]["P"] | Inner["~types"]["P"],
  Outer["~types"]["R"] | Exclude<Inner["~types"]["R"], Outer["~types"]["P"]>,
  Outer["~types"]["E"] | ExcludeTags<Inner["~types"]["E"], Outer["~types"]["H"]>,
  Outer["~types"]["H"] | Inner["~types"]["H"],
  Outer["~types"]["LE"] | Inner["~types"]["LE"],
  Outer["~types"]["LR"] | Inner["~types"]["LR"]
>

/**
 * The services an outer middleware requires that an inner one provides: the outer one runs first,
 * so it would never see them.
 *
 * @category models
 */
export type Misordered<Outer extends Any, Inner extends Any> = Extract<
  Outer["~types"]["R"],
  Inner["~types"]["P"]
>

/**
 * A list of middleware folded into one stack, the first outermost.
 *
 * @category models
 */
export type Stack<Ms extends ReadonlyArray<Any>, Acc extends Any = Identity> = Ms extends readonly [
  infer Head extends Any,
  ...infer Tail extends ReadonlyArray<Any>
]
  ? Stack<Tail, Compose<Acc, Head>>
  : Acc

/**
 * The services that some middleware of the list requires and a later one provides.
 *
 * @category models
 */
export type MisorderedIn<
  Ms extends ReadonlyArray<Any>,
  Acc extends Any = Identity,
  Found = never
> = Ms extends readonly [infer Head extends Any, ...infer Tail extends ReadonlyArray<Any>]
  ? MisorderedIn<Tail, Compose<Acc, Head>, Found | Misordered<Acc, Head>>
  : Found

/**
 * The compile-time message for a misordered stack. It names each service that is required before
 * the middleware that provides it runs.
 *
 * @category models
 */
export type OrderError<S> = {
  readonly "strata: middleware order": `${KeyOf<S>} is required by a middleware that runs before the one that provides it; move the provider earlier`
}

const Proto = {
  [TypeId]: TypeId,
  pipe() {
    return pipeArguments(this, arguments)
  }
}

/** @internal */
export const fromEntries = <M extends Any>(entries: ReadonlyArray<Entry>): M => {
  const self = Object.create(Proto)
  self.entries = entries
  return self
}

/**
 * Is this value a middleware?
 *
 * @category guards
 */
export const isMiddleware = (u: unknown): u is Any => typeof u === "object" && u !== null && TypeId in u

/**
 * The middleware that does nothing.
 *
 * @category constructors
 */
export const identity: Identity = fromEntries([])

type IdentifierOf<K> = K extends Context.Key<infer I, any> ? I : never

/**
 * The `next` effect a middleware wraps: it needs the provided services and may fail with the
 * handled errors (by tag) or with errors the middleware must pass on.
 *
 * @category models
 */
export type Next<P, H extends string> = Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  Types.unhandled | ([H] extends [never] ? never : { readonly _tag: H }),
  P
>

/**
 * The middleware `make` returns once it checked `apply` against what it declares: it passes inner
 * errors on, provides what it declares, and its `raises` and `requires` lists (which the manifest
 * shows) name every error tag it can fail with and every request-scoped service it reads;
 * otherwise a message.
 *
 * @category models
 */
export type Checked<P, E, R, H, Declared, LE = never, LR = never> = [Types.unhandled] extends [E]
  ? [Extract<R, P>] extends [never]
    ? [
        Exclude<TagOf<Exclude<E, Types.unhandled>>, Declared extends { readonly raises: infer T } ? T : never>
      ] extends [never]
      ? [
          Exclude<Extract<R, RequestScoped>, Declared extends { readonly requires: infer Q } ? Q : never>
        ] extends [never]
        ? Middleware<P, Exclude<R, HttpRouter.Provided>, Exclude<E, Types.unhandled>, H, LE, LR>
        : {
            readonly "strata: middleware": `requires must list ${KeyOf<Exclude<Extract<R, RequestScoped>, Declared extends { readonly requires: infer Q } ? Q : never>>}, which it reads`
          }
      : {
          readonly "strata: middleware": `raises must list ${Exclude<TagOf<Exclude<E, Types.unhandled>>, Declared extends { readonly raises: infer T } ? T : never>}, which it can fail with`
        }
    : { readonly "strata: middleware": `apply must provide ${KeyOf<Extract<R, P>>} to next` }
  : { readonly "strata: middleware": "apply must pass on the errors of next it does not handle" }

/**
 * Options shared by the middleware constructors.
 *
 * @category models
 */
export interface Options<
  Provides extends ReadonlyArray<Context.Key<any, any>>,
  Handles extends string,
  Raises extends string = string,
  Requires extends ReadonlyArray<Context.Key<any, any>> = ReadonlyArray<Context.Key<any, any>>
> {
  /** A short name, shown in the manifest and in logs. */
  readonly name: string
  /** The request-scoped services this middleware provides; the types are taken from this list. */
  readonly provides?: Provides | undefined
  /** Tags of the errors from inside that this middleware turns into responses. */
  readonly handles?: ReadonlyArray<Handles> | undefined
  /** Tags of the errors it raises, for the manifest; the compiler checks the list is complete. */
  readonly raises?: ReadonlyArray<Raises> | undefined
  /** Request-scoped services it reads, for the manifest; the compiler checks the list is complete. */
  readonly requires?: Requires | undefined
}

const keyName = (key: Context.Key<any, any>): string => (key as { readonly key?: string }).key ?? String(key)

const infoOf = (options: Options<ReadonlyArray<Context.Key<any, any>>, string, string>): Info => ({
  name: options.name,
  provides: (options.provides ?? []).map(keyName),
  requires: (options.requires ?? []).map(keyName),
  raises: options.raises ?? [],
  handles: options.handles ?? []
})

/**
 * Makes a middleware from a function around the handler.
 *
 * @example
 * ```ts
 * const tenant = Middleware.make({
 *   name: "tenant",
 *   provides: [Tenant],
 *   apply: (next) =>
 *     Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
 *       Effect.provideService(next, Tenant, { id: request.headers["x-tenant"] ?? "public" }))
 * })
 * ```
 * @category constructors
 */
export const make = <
  const Provides extends ReadonlyArray<Context.Key<any, any>> = readonly [],
  const Handles extends string = never,
  Out extends Effect.Effect<HttpServerResponse.HttpServerResponse, any, any> = never,
  const Raises extends string = never,
  const Requires extends ReadonlyArray<Context.Key<any, any>> = readonly []
>(
  options: Options<Provides, Handles, Raises, Requires> & {
    readonly apply: (next: Next<IdentifierOf<Provides[number]>, Handles>) => Out
  }
): Checked<
  IdentifierOf<Provides[number]>,
  Effect.Error<Out>,
  Effect.Services<Out>,
  Handles,
  { readonly raises: Raises; readonly requires: IdentifierOf<Requires[number]> }
> => fromEntries([{ info: infoOf(options), build: Effect.succeed(options.apply as Wrap) }]) as any

/**
 * Makes a middleware whose wrapper is built once by an effect when the app starts (to open a store,
 * read a key from `Config`, …). The effect's requirements become the app layer's requirements.
 *
 * @category constructors
 */
export const effect = <
  const Provides extends ReadonlyArray<Context.Key<any, any>> = readonly [],
  const Handles extends string = never,
  Out extends Effect.Effect<HttpServerResponse.HttpServerResponse, any, any> = never,
  LE = never,
  LR = never,
  const Raises extends string = never,
  const Requires extends ReadonlyArray<Context.Key<any, any>> = readonly []
>(
  options: Options<Provides, Handles, Raises, Requires> & {
    readonly build: Effect.Effect<(next: Next<IdentifierOf<Provides[number]>, Handles>) => Out, LE, LR>
  }
): Checked<
  IdentifierOf<Provides[number]>,
  Effect.Error<Out>,
  Effect.Services<Out>,
  Handles,
  { readonly raises: Raises; readonly requires: IdentifierOf<Requires[number]> },
  LE,
  LR
> => fromEntries([{ info: infoOf(options), build: options.build as Effect.Effect<Wrap, LE, LR> }]) as any

/**
 * Composes middleware into one stack. The first runs outermost and the stack reads the way it
 * runs. A middleware that requires a service a later one provides does not compile; the message
 * names the service.
 *
 * @category combinators
 */
export const stack = <const Ms extends ReadonlyArray<Any>>(
  ...middleware: Ms
): [MisorderedIn<Ms>] extends [never] ? Stack<Ms> : OrderError<MisorderedIn<Ms>> =>
  fromEntries(middleware.flatMap((m) => m.entries)) as any

/**
 * Turns a service into a narrower, branded one: reads `From`, checks it, and provides `To` to what
 * runs inside. This is how `requireRole("admin")` turns a user into `Authorized<"admin">`.
 *
 * @example
 * ```ts
 * class Admin extends Middleware.Service<Admin, User & { readonly role: "admin" }>()("app/Admin") {}
 * const admin = Middleware.refine({
 *   name: "admin",
 *   from: CurrentUser,
 *   to: Admin,
 *   check: (user) => user.role === "admin" ? Effect.succeed({ ...user, role: "admin" as const }) : Effect.fail(new Forbidden())
 * })
 * ```
 * @category constructors
 */
export const refine = <
  FromId,
  FromShape,
  ToId,
  ToShape,
  E = never,
  R = never,
  const Raises extends string = never
>(options: {
  readonly name: string
  readonly from: Context.Key<FromId, FromShape>
  readonly to: Context.Key<ToId, ToShape>
  readonly check: (value: FromShape) => Effect.Effect<ToShape, E, R>
  /** Tags of the errors `check` fails with, for the manifest; the compiler checks the list is complete. */
  readonly raises?: ReadonlyArray<Raises> | undefined
}): [Exclude<TagOf<E>, Raises>] extends [never]
  ? Middleware<ToId, FromId | Exclude<R, HttpRouter.Provided>, E, never>
  : {
      readonly "strata: middleware": `raises must list ${Exclude<TagOf<E>, Raises>}, which it can fail with`
    } =>
  fromEntries([
    {
      info: {
        name: options.name,
        provides: [keyName(options.to)],
        requires: [keyName(options.from)],
        raises: options.raises ?? [],
        handles: []
      },
      build: Effect.succeed(
        (next) =>
          Effect.flatMap(Effect.flatMap(options.from, options.check), (refined) =>
            Effect.provideService(next, options.to, refined)
          ) as any
      )
    }
  ]) as any

/**
 * The alternative of a `oneOf` that matched, by name.
 *
 * @category models
 */
export class Matched extends Service<Matched, { readonly name: string; readonly index: number }>()(
  "@strata/core/Middleware/Matched"
) {}

/**
 * A `oneOf` whose every alternative failed; carries each failure in order. Its response is the first
 * failure's response, with every alternative's `WWW-Authenticate` challenge, so a client learns all
 * the ways it may authenticate.
 *
 * @category errors
 */
export class NoAlternativeMatched<out E = unknown>
  extends Data.TaggedError("NoAlternativeMatched")<{ readonly failures: ReadonlyArray<unknown> }>
  implements HttpServerRespondable.Respondable
{
  declare readonly failures: ReadonlyArray<E>;
  [HttpServerRespondable.symbol](): Effect.Effect<HttpServerResponse.HttpServerResponse> {
    return Effect.gen({ self: this }, function* () {
      const responses: Array<HttpServerResponse.HttpServerResponse> = []
      for (const failure of this.failures) {
        if (HttpServerRespondable.isRespondable(failure)) {
          responses.push(yield* HttpServerRespondable.toResponse(failure))
        }
      }
      const first = responses[0]
      if (first === undefined) return HttpServerResponse.empty({ status: 500 })
      const challenges = responses.flatMap((r) => {
        const value = r.headers["www-authenticate"]
        return value === undefined ? [] : [value]
      })
      return challenges.length > 1
        ? HttpServerResponse.setHeader(first, "www-authenticate", challenges.join(", "))
        : first
    })
  }
}

type AllProvide<U extends Any, S> = U extends Any ? ([S] extends [U["~types"]["P"]] ? true : false) : never

/**
 * The services that every middleware of the union `U` provides.
 *
 * @category models
 */
export type CommonProvides<U extends Any> = U["~types"]["P"] extends infer S
  ? S extends unknown
    ? [AllProvide<U, S>] extends [true]
      ? S
      : never
    : never
  : never

/**
 * Runs alternatives in order until one succeeds; what runs inside gets the services every alternative
 * provides, plus `Matched` naming the one that did. When all fail, it fails with
 * `NoAlternativeMatched` carrying every failure. Errors raised inside (by the handler) are passed on
 * as they are and never make the next alternative run.
 *
 * @example
 * ```ts
 * const anyUser = Middleware.oneOf({ bearer, apiKey, session: sessionUser })
 * ```
 * @category combinators
 */
export const oneOf = <const Alternatives extends Record<string, Middleware<any, any, any, never, any, any>>>(
  alternatives: Alternatives
): Middleware<
  CommonProvides<Alternatives[keyof Alternatives]> | Matched,
  Alternatives[keyof Alternatives]["~types"]["R"],
  NoAlternativeMatched<Alternatives[keyof Alternatives]["~types"]["E"]>,
  never,
  Alternatives[keyof Alternatives]["~types"]["LE"],
  Alternatives[keyof Alternatives]["~types"]["LR"]
> => {
  const names = Object.keys(alternatives)
  const members = names.map((name) => alternatives[name]!)
  const providedBy = members.map((m) => new Set(m.entries.flatMap((e) => e.info.provides)))
  return fromEntries([
    {
      info: {
        name: `oneOf(${names.join(", ")})`,
        provides: [...(providedBy[0] ?? [])]
          .filter((key) => providedBy.every((set) => set.has(key)))
          .concat(Matched.key),
        requires: [...new Set(members.flatMap((m) => m.entries.flatMap((e) => e.info.requires)))],
        raises: ["NoAlternativeMatched"],
        handles: []
      },
      build: Effect.gen(function* () {
        const wraps: Array<ReadonlyArray<Wrap>> = []
        for (const member of members) wraps.push(yield* Effect.forEach(member.entries, (e) => e.build))
        return (next) => oneOfRun(names, wraps, next)
      })
    }
  ])
}

// Marks a failure of the inside so it is told apart from the alternative's own failure.
class InnerFailure {
  readonly cause: Cause.Cause<unknown>
  constructor(cause: Cause.Cause<unknown>) {
    this.cause = cause
  }
}

const oneOfRun = (
  names: ReadonlyArray<string>,
  wraps: ReadonlyArray<ReadonlyArray<Wrap>>,
  next: Effect.Effect<HttpServerResponse.HttpServerResponse, any, any>
) =>
  Effect.gen(function* () {
    const failures: Array<unknown> = []
    for (let index = 0; index < wraps.length; index++) {
      const inner = Effect.provideService(
        Effect.catchCause(next, (cause) => Effect.fail(new InnerFailure(cause))),
        Matched,
        { name: names[index]!, index }
      )
      const exit = yield* Effect.exit(wraps[index]!.reduceRight((acc, wrap) => wrap(acc), inner))
      if (Exit.isSuccess(exit)) return exit.value
      const error = Cause.findErrorOption(exit.cause)
      if (error._tag === "None") return yield* Effect.failCause(exit.cause)
      if (error.value instanceof InnerFailure) return yield* Effect.failCause(error.value.cause)
      failures.push(error.value)
    }
    return yield* Effect.fail(new NoAlternativeMatched({ failures }))
  })

/**
 * Runs one middleware alone against a request, with fake upstream services, and reports what it
 * provided to its inside or how it failed. For unit tests of a middleware without a server.
 *
 * @category testing
 */
export const test = <P, R, E, H, LE, LR>(
  self: Middleware<P, R, E, H, LE, LR>,
  options: {
    readonly request: Request
    /** Services the middleware needs from outside and to build (fakes in tests). */
    readonly context?: Context.Context<R | LR> | undefined
    /** What runs inside; by default a handler answering 204. */
    readonly inner?: Effect.Effect<HttpServerResponse.HttpServerResponse, any, P> | undefined
  }
): Effect.Effect<
  {
    /** The response as the client would get it (after response hooks such as Set-Cookie). */
    readonly response: Response
    readonly provided: Context.Context<P> | undefined
  },
  E | LE
> =>
  Effect.gen(function* () {
    const wraps = yield* Effect.forEach(self.entries, (e) => e.build)
    let provided: Context.Context<P> | undefined
    const inner = Effect.flatMap(Effect.context<P>(), (context) => {
      provided = context
      return options.inner ?? Effect.succeed(HttpServerResponse.empty({ status: 204 }))
    })
    const wrapped = wraps.reduceRight((acc, wrap) => wrap(acc), inner as Effect.Effect<any, any, any>)
    let exit: Exit.Exit<unknown, unknown> | undefined
    // Run it the way the server does, so response hooks (cookies, headers) apply; the current context
    // (fakes, TestClock) is handed down.
    const handler = HttpEffect.toWebHandlerWith(yield* Effect.context<never>())(
      Effect.onExit(wrapped, (e) => Effect.sync(() => void (exit = e))) as Effect.Effect<
        HttpServerResponse.HttpServerResponse,
        unknown,
        never
      >
    )
    const response = yield* Effect.promise(() => handler(options.request))
    if (exit !== undefined && Exit.isFailure(exit)) return yield* Effect.failCause(exit.cause)
    return { response, provided }
  }).pipe(Effect.provideContext((options.context ?? Context.empty()) as Context.Context<any>)) as any
