/**
 * Routers group routes (and other routers) under a path prefix and give them middleware. Types only
 * reach the routes a middleware really runs on: a router's routes see what its own middleware and
 * its parents' middleware provide, nothing else.
 *
 * @since 0.1.0
 */
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import type * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Middleware from "./Middleware.ts"
import * as Route from "./Route.ts"

/**
 * @category type ids
 */
export const TypeId = "~@strata/core/Router" as const

/**
 * What the types remember of one route: how it is called and which services the middleware of the
 * routers below the top one provide to it.
 *
 * @category models
 */
export interface RouteSig<out M extends string, out P extends string, out Provides> {
  readonly method: M
  readonly path: P
  readonly provides: Provides
}

/**
 * A router.
 *
 * - `Sigs`: a union of `RouteSig`, one per route, for route-level checks
 * - `RR`, `RE`: what its routes and sub-routers need and raise, before its own middleware
 * - `S`: its own middleware stack
 * - `LE`, `LR`: errors and needs of building the middleware of its sub-routers
 *
 * @category models
 */
export interface Router<
  out Sigs,
  out RR,
  out RE,
  out S extends Middleware.Any,
  out LE = never,
  out LR = never
> extends Pipeable {
  readonly [TypeId]: typeof TypeId
  readonly "~types": {
    readonly Sigs: Sigs
    readonly RR: RR
    readonly RE: RE
    readonly S: S
    readonly LE: LE
    readonly LR: LR
  }
  readonly prefix: string
  readonly children: ReadonlyArray<Route.Any | Any>
  readonly entries: ReadonlyArray<Middleware.Entry>
}

/**
 * Any router.
 *
 * @category models
 */
export type Any = Router<any, any, any, Middleware.Any, any, any>

/**
 * @category models
 */
export declare namespace Router {
  /** What the router needs from outside: services its middleware or routes read and nothing in it provides. */
  export type Requires<G extends Any> =
    G["~types"]["S"]["~types"]["R"] | Exclude<G["~types"]["RR"], G["~types"]["S"]["~types"]["P"]>
  /** The errors that leave the router. */
  export type Error<G extends Any> =
    | G["~types"]["S"]["~types"]["E"]
    | Middleware.ExcludeTags<G["~types"]["RE"], G["~types"]["S"]["~types"]["H"]>
  /** Errors of building the router's middleware. */
  export type LayerError<G extends Any> = G["~types"]["LE"] | G["~types"]["S"]["~types"]["LE"]
  /** Needs of building the router's middleware. */
  export type LayerRequires<G extends Any> = G["~types"]["LR"] | G["~types"]["S"]["~types"]["LR"]
  /** Each route with the services all middleware on its path provide. */
  export type Routes<G extends Any> = Flatten<G["~types"]["Sigs"], "", G["~types"]["S"]["~types"]["P"]>
}

type JoinPath<Prefix extends string, P extends string> = Prefix extends ""
  ? P
  : P extends "/"
    ? Prefix
    : P extends "*"
      ? `${Prefix}/*`
      : `${Prefix}${P}`

/**
 * A sub-router's routes, kept as they are: flattening them at every level would make a router's
 * type cost its number of routes times its depth. They are flattened once, by the checks that read
 * them.
 *
 * @category models
 */
export interface NestedSigs<out Prefix extends string, out Provides, out Sigs> {
  readonly prefix: Prefix
  readonly provides: Provides
  readonly sigs: Sigs
}

type Flatten<Sigs, Prefix extends string, Provides> =
  Sigs extends RouteSig<infer M, infer P, infer Pr>
    ? RouteSig<M, JoinPath<Prefix, P>, Pr | Provides>
    : Sigs extends NestedSigs<infer NP, infer NPr, infer Inner>
      ? Flatten<Inner, JoinPath<Prefix, NP>, Provides | NPr>
      : never

type ChildSigs<C, Prefix extends string> =
  C extends Route.Route<infer M, infer P, any, any>
    ? RouteSig<M, JoinPath<Prefix, P>, never>
    : C extends Router<infer Sigs, any, any, infer S, any, any>
      ? NestedSigs<Prefix, S["~types"]["P"], Sigs>
      : never

type ChildRequires<C> =
  C extends Route.Route<any, any, any, infer R> ? R : C extends Any ? Router.Requires<C> : never
type ChildError<C> =
  C extends Route.Route<any, any, infer E, any> ? E : C extends Any ? Router.Error<C> : never
type ChildLayerError<C> = C extends Any ? Router.LayerError<C> : never
type ChildLayerRequires<C> = C extends Any ? Router.LayerRequires<C> : never

/**
 * The router made of `C` under `Prefix`.
 *
 * @category models
 */
export type Group<Prefix extends string, C> = Router<
  ChildSigs<C, Prefix>,
  ChildRequires<C>,
  ChildError<C>,
  Middleware.Identity,
  ChildLayerError<C>,
  ChildLayerRequires<C>
>

const Proto = {
  [TypeId]: TypeId,
  pipe() {
    return pipeArguments(this, arguments)
  }
}

const makeRouter = (
  prefix: string,
  children: ReadonlyArray<Route.Any | Any>,
  entries: ReadonlyArray<Middleware.Entry>
): any => {
  const self = Object.create(Proto)
  self.prefix = prefix
  self.children = children
  self.entries = entries
  return self
}

/**
 * Is this value a router?
 *
 * @category guards
 */
export const isRouter = (u: unknown): u is Any => typeof u === "object" && u !== null && TypeId in u

/**
 * Groups routes and routers under a prefix (`""` for none).
 *
 * @example
 * ```ts
 * const api = Router.group("/api", [listUsers, deleteUser]).pipe(Router.use(session, auth))
 * ```
 * @category constructors
 */
export const group = <const Prefix extends "" | `/${string}`, C extends Route.Any | Any>(
  prefix: Prefix,
  children: ReadonlyArray<C>
): Group<Prefix, C> => makeRouter((prefix as string).replace(/\/+$/, ""), children, [])

/**
 * A router without a prefix, usually the app's root.
 *
 * @category constructors
 */
export const make = <C extends Route.Any | Any>(children: ReadonlyArray<C>): Group<"", C> =>
  makeRouter("", children, [])

/**
 * The router with `Ms` added inside the middleware it already has: written order is run order,
 * whether given in one call or in several.
 *
 * @category models
 */
export type Use<G extends Any, Ms extends ReadonlyArray<Middleware.Any>> = Router<
  G["~types"]["Sigs"],
  G["~types"]["RR"],
  G["~types"]["RE"],
  Middleware.Stack<[G["~types"]["S"], ...Ms]>,
  G["~types"]["LE"],
  G["~types"]["LR"]
>

/**
 * The compile-time check of `use`: no middleware may require what a later one provides.
 *
 * @category models
 */
export type UseCheck<G extends Any, Ms extends ReadonlyArray<Middleware.Any>> = [
  Middleware.MisorderedIn<[G["~types"]["S"], ...Ms]>
] extends [never]
  ? unknown
  : {
      readonly "strata: middleware order": `${Middleware.KeyOf<Middleware.MisorderedIn<[G["~types"]["S"], ...Ms]>>} is required by a middleware that runs before the one that provides it; move the provider earlier`
    }

/**
 * Adds middleware to a router. The first runs outermost; middleware added by a later `use` runs
 * inside the earlier ones. A middleware that requires a service a later one provides does not
 * compile, and the message names the service.
 *
 * @example
 * ```ts
 * Router.group("/api", routes).pipe(Router.use(RequestId.middleware(), Logger.middleware()), Router.use(auth))
 * ```
 * @category combinators
 */
export const use: {
  <const Ms extends ReadonlyArray<Middleware.Any>>(
    ...middleware: Ms
  ): <G extends Any>(self: G & UseCheck<G, Ms>) => Use<G, Ms>
  <G extends Any, const Ms extends ReadonlyArray<Middleware.Any>>(
    self: G & UseCheck<G, Ms>,
    ...middleware: Ms
  ): Use<G, Ms>
} = dual(
  (args) => isRouter(args[0]),
  (self: Any, ...middleware: ReadonlyArray<Middleware.Any>) =>
    makeRouter(self.prefix, self.children, [...self.entries, ...middleware.flatMap((m) => m.entries)])
)

type TaggedIn<E, K extends PropertyKey> = Extract<E, { readonly _tag: K }>

/**
 * Answers some of the router's route errors, by tag; the handlers' parameter types come from the
 * errors the routes can raise. It runs inside the router's middleware (and catches only what its
 * routes raise), so the mapping is local to the router.
 *
 * @example
 * ```ts
 * users.pipe(Router.catchTags({ UserNotFound: (e) => HttpServerResponse.jsonUnsafe({ id: e.id }, { status: 404 }) }))
 * ```
 * @category combinators
 */
export const catchTags: {
  <
    G extends Any,
    const Handlers extends {
      readonly [K in Middleware.TagOf<G["~types"]["RE"]>]?: (
        error: TaggedIn<G["~types"]["RE"], K>
      ) => HttpServerResponse.HttpServerResponse | Effect.Effect<HttpServerResponse.HttpServerResponse>
    }
  >(
    handlers: Handlers
  ): (self: G) => CatchTags<G, keyof Handlers & string>
  <
    G extends Any,
    const Handlers extends {
      readonly [K in Middleware.TagOf<G["~types"]["RE"]>]?: (
        error: TaggedIn<G["~types"]["RE"], K>
      ) => HttpServerResponse.HttpServerResponse | Effect.Effect<HttpServerResponse.HttpServerResponse>
    }
  >(
    self: G,
    handlers: Handlers
  ): CatchTags<G, keyof Handlers & string>
} = dual(2, (self: Any, handlers: Record<string, (e: any) => any>) => {
  const tags = Object.keys(handlers)
  const entry: Middleware.Entry = {
    info: { name: "catchTags", provides: [], requires: [], raises: [], handles: tags },
    build: Effect.succeed((next) =>
      Effect.catchIf(
        next,
        (e: any) => typeof e === "object" && e !== null && Object.hasOwn(handlers, e._tag),
        (e: any) => {
          const out = handlers[e._tag]!(e)
          return Effect.isEffect(out) ? out : Effect.succeed(out)
        }
      )
    )
  }
  return makeRouter(self.prefix, self.children, [...self.entries, entry])
})

/**
 * The router once `catchTags` answers the errors tagged `Tags`.
 *
 * @category models
 */
export type CatchTags<G extends Any, Tags extends string> = Router<
  G["~types"]["Sigs"],
  G["~types"]["RR"],
  Middleware.ExcludeTags<G["~types"]["RE"], Tags>,
  G["~types"]["S"],
  G["~types"]["LE"],
  G["~types"]["LR"]
>

/**
 * One route of the manifest.
 *
 * @category models
 */
export interface ManifestRoute {
  readonly method: Route.Method
  readonly path: string
  /** Middleware on the route's path, outermost first. */
  readonly middleware: ReadonlyArray<Middleware.Info>
  /** Request-scoped services the middleware on the path provide. */
  readonly provides: ReadonlyArray<string>
  /** Error tags the middleware on the path may raise (not counting the handler's own). */
  readonly raises: ReadonlyArray<string>
}

/** @internal */
export const joinPath = (prefix: string, path: string): string =>
  prefix === "" ? path : path === "/" ? prefix : path === "*" ? `${prefix}/*` : `${prefix}${path}`

/**
 * Every route of a router with its middleware in order and what they provide and raise.
 *
 * @category manifest
 */
export const manifest = (self: Any): ReadonlyArray<ManifestRoute> => {
  const out: Array<ManifestRoute> = []
  const visit = (node: Route.Any | Any, prefix: string, infos: ReadonlyArray<Middleware.Info>) => {
    if (Route.isRoute(node)) {
      out.push({
        method: node.method,
        path: joinPath(prefix, node.path),
        middleware: infos,
        provides: [...new Set(infos.flatMap((i) => i.provides))],
        raises: [...new Set(infos.flatMap((i) => i.raises))]
      })
      return
    }
    const inner = [...infos, ...node.entries.map((e) => e.info)]
    for (const child of node.children) visit(child, joinPath(prefix, node.prefix), inner)
  }
  visit(self, "", [])
  return out
}

/**
 * `METHOD /path`, how a route is named in checks and messages.
 *
 * @category models
 */
export type RouteId<G extends Any> = IdsOf<G["~types"]["Sigs"], "">

type IdsOf<Sigs, Prefix extends string> =
  Sigs extends RouteSig<infer M, infer P, any>
    ? `${M} ${JoinPath<Prefix, P>}`
    : Sigs extends NestedSigs<infer NP, any, infer Inner>
      ? IdsOf<Inner, JoinPath<Prefix, NP>>
      : never

/**
 * The routes of `G` that no middleware gives `S`.
 *
 * @category models
 */
export type RoutesWithout<G extends Any, S> = SigsWithout<
  G["~types"]["Sigs"],
  S,
  "",
  G["~types"]["S"]["~types"]["P"]
>

// A sub-router whose middleware (or its parents') provide S is left out whole, unvisited.
type SigsWithout<Sigs, S, Prefix extends string, Provides> = [S] extends [Provides]
  ? never
  : Sigs extends RouteSig<infer M, infer P, infer Pr>
    ? [S] extends [Pr | Provides]
      ? never
      : `${M} ${JoinPath<Prefix, P>}`
    : Sigs extends NestedSigs<infer NP, infer NPr, infer Inner>
      ? SigsWithout<Inner, S, JoinPath<Prefix, NP>, Provides | NPr>
      : never

/**
 * The compile-time check of `requireEverywhere`.
 *
 * @category models
 */
export type RequireEverywhereCheck<G extends Any, S, Except> = [
  Exclude<RoutesWithout<G, S>, Except>
] extends [never]
  ? unknown
  : {
      readonly "strata: unprotected routes": `${Exclude<RoutesWithout<G, S>, Except>} runs no middleware that provides ${Middleware.KeyOf<S>}`
    }

/**
 * Asserts that every route but those in `except` runs a middleware that provides `service` (for
 * example `CurrentUser`): a route added later without auth fails to compile, naming the route, and
 * the same check runs when the call runs (at start), throwing with the list.
 *
 * @example
 * ```ts
 * const app = Router.requireEverywhere(root, CurrentUser, { except: ["GET /health", "POST /login"] })
 * ```
 * @category manifest
 */
export const requireEverywhere = <
  G extends Any,
  S,
  const Except extends ReadonlyArray<RouteId<G>> = readonly []
>(
  self: G & RequireEverywhereCheck<G, S, Except[number]>,
  service: Context.Key<S, any>,
  options?: { readonly except?: Except | undefined }
): G => {
  const missing = routesWithout(self, service, options?.except ?? [])
  if (missing.length > 0) {
    throw new Error(
      `Routes without a middleware that provides ${(service as { key?: string }).key}: ${missing.join(", ")}`
    )
  }
  return self
}

/**
 * The routes (as `METHOD /path`) that no middleware gives `service`, leaving out `except`; the
 * runtime side of `requireEverywhere`.
 *
 * @category manifest
 */
export const routesWithout = (
  self: Any,
  service: Context.Key<any, any>,
  except: ReadonlyArray<string> = []
): ReadonlyArray<string> => {
  const key = (service as { key?: string }).key
  return manifest(self)
    .filter((r) => key === undefined || !r.provides.includes(key))
    .map((r) => `${r.method} ${r.path}`)
    .filter((id) => !except.includes(id))
}
