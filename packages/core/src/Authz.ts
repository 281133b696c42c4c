/**
 * Authorization guards: each checks the current user and provides a branded proof,
 * `Authorized<"admin">`, that handlers demand. A handler that demands a proof its route's guards do
 * not give does not compile; a request that fails a guard gets 403.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as HttpRouter from "effect/http/HttpRouter"
import * as HttpError from "./HttpError.ts"
import * as Middleware from "./Middleware.ts"

/**
 * The proof that the current request passed the guard named `Tag` (a role, a permission or a
 * policy). Request-scoped: only a guard on the route can provide it.
 *
 * @category models
 */
export interface Authorized<Tag extends string> extends Middleware.RequestScoped {
  readonly "~@strata/core/Authorized": Tag
  readonly key: `@strata/core/Authorized/${Tag}`
}

/**
 * What a handler gets from `Authorized(tag)`: which guard passed, for whom.
 *
 * @category models
 */
export interface Grant<Tag extends string> {
  readonly tag: Tag
  readonly kind: "role" | "permission" | "policy"
}

/**
 * The service key of the proof for `tag`; `yield*` it in a handler to demand the proof.
 *
 * @example
 * ```ts
 * const deleteUser = Route.del("/users/:id", Effect.gen(function* () {
 *   yield* Authz.Authorized("admin")
 *   …
 * }))
 * ```
 * @category services
 */
export const Authorized = <const Tag extends string>(
  tag: Tag
): Context.Service<Authorized<Tag>, Grant<Tag>> =>
  Context.Service<Authorized<Tag>, Grant<Tag>>(`@strata/core/Authorized/${tag}`)

const keyName = (key: Context.Key<any, any>) => (key as { readonly key?: string }).key ?? "user"

const guard = <const Tag extends string, UserId, User, E, R>(
  kind: Grant<Tag>["kind"],
  tag: Tag,
  user: Context.Key<UserId, User>,
  check: (user: User) => Effect.Effect<boolean, E, R>
): Middleware.Middleware<
  Authorized<Tag>,
  UserId | Exclude<R, HttpRouter.Provided>,
  E | HttpError.Forbidden
> => {
  const key = Authorized(tag)
  const grant: Grant<Tag> = { tag, kind }
  return Middleware.fromEntries([
    {
      info: {
        name: `${kind}:${tag}`,
        provides: [key.key],
        requires: [keyName(user)],
        raises: ["Forbidden"],
        handles: []
      },
      build: Effect.succeed((next) =>
        Effect.gen(function* () {
          const value = yield* user
          if (!(yield* check(value)))
            return yield* new HttpError.Forbidden({ reason: `${kind} ${tag} not granted` })
          return yield* Effect.provideService(next, key, grant)
        })
      )
    }
  ])
}

/**
 * Lets through users with `role`, as `roles` reads them off the user; provides `Authorized<role>`.
 *
 * @example
 * ```ts
 * const admin = Authz.requireRole({ user: CurrentUser, role: "admin", roles: (u) => u.roles })
 * ```
 * @category middleware
 */
export const requireRole = <UserId, User, const Role extends string>(options: {
  readonly user: Context.Key<UserId, User>
  readonly role: Role
  readonly roles: (user: User) => ReadonlyArray<string>
}): Middleware.Middleware<Authorized<Role>, UserId, HttpError.Forbidden> =>
  guard("role", options.role, options.user, (user) =>
    Effect.succeed(options.roles(user).includes(options.role))
  )

/**
 * Lets through users with `permission`; provides `Authorized<permission>`.
 *
 * @category middleware
 */
export const requirePermission = <UserId, User, const Permission extends string>(options: {
  readonly user: Context.Key<UserId, User>
  readonly permission: Permission
  readonly permissions: (user: User) => ReadonlyArray<string>
}): Middleware.Middleware<Authorized<Permission>, UserId, HttpError.Forbidden> =>
  guard("permission", options.permission, options.user, (user) =>
    Effect.succeed(options.permissions(user).includes(options.permission))
  )

/**
 * A guard decided by an effect over the user and the request (path params, a database lookup):
 * "the owner of the note in the path". Provides `Authorized<name>`; the check's errors pass on.
 *
 * @example
 * ```ts
 * const owner = Authz.policy({
 *   name: "note-owner",
 *   user: CurrentUser,
 *   check: (user) => Effect.gen(function* () {
 *     const { id } = yield* HttpRouter.params
 *     return (yield* (yield* Notes).find(id ?? ""))?.owner === user.id
 *   })
 * })
 * ```
 * @category middleware
 */
export const policy = <UserId, User, const Name extends string, E = never, R = never>(options: {
  readonly name: Name
  readonly user: Context.Key<UserId, User>
  readonly check: (user: User) => Effect.Effect<boolean, E, R>
}): Middleware.Middleware<
  Authorized<Name>,
  UserId | Exclude<R, HttpRouter.Provided>,
  E | HttpError.Forbidden
> => guard("policy", options.name, options.user, options.check)
