/**
 * Writes the apps the type-check benchmark compiles: the same app shape once on Strata and once on
 * Effect 4's `effect/http` HttpRouter alone, at a given number of routes.
 *
 * The shape: 8 middleware that each provide a request-scoped service, some requiring what an earlier
 * one provides (requestId → logger → session → auth → role guard → tenant → locale → rate limit);
 * one public group and the rest under `/api`, behind all 8; handlers that read several services and
 * an app service, some failing with typed errors, some mapped per group; at the end the served layer
 * with its requirements spelled out (and, on Strata, `requireEverywhere(CurrentUser)`).
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs"
import { join, relative } from "node:path"

export type Variant = "strata" | "raw"

/**
 * A change that must make the app fail to compile:
 * - `missing-service`: a public route reads `CurrentUser`, which no middleware on its path provides
 * - `unprotected-route`: a public route is added without being listed in `requireEverywhere`'s `except`
 */
export type Probe = "missing-service" | "unprotected-route"

export interface Spec {
  readonly variant: Variant
  readonly routes: number
  readonly groups: number
  readonly probe?: Probe | undefined
}

/** The one error a probe must produce. */
export interface Expected {
  readonly code: number
  /** Substrings the error's message must contain. */
  readonly includes: ReadonlyArray<string>
}

export interface Generated {
  readonly name: string
  readonly dir: string
  readonly tsconfig: string
  readonly files: number
  readonly routes: number
  readonly expected?: Expected | undefined
}

type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE"

const methods: ReadonlyArray<Method> = ["GET", "POST", "PUT", "PATCH", "DELETE"]

const strataMethod: Record<Method, string> = {
  GET: "get",
  POST: "post",
  PUT: "put",
  PATCH: "patch",
  DELETE: "del"
}

interface RouteModel {
  readonly name: string
  readonly method: Method
  /** The path inside its group. */
  readonly path: string
  /** The full path, as `requireEverywhere` names it. */
  readonly fullPath: string
  readonly handler: string
}

interface GroupModel {
  readonly name: string
  readonly prefix: string
  readonly isPublic: boolean
  /** Some route raises `Conflict`, which the group maps to a response. */
  readonly mapsConflict: boolean
  readonly routes: ReadonlyArray<RouteModel>
}

export const appName = (spec: Spec): string =>
  `${spec.variant}-${spec.routes}${spec.probe === undefined ? "" : `-probe-${spec.probe}`}`

const pad = (n: number): string => String(n).padStart(2, "0")

// Handlers read request-scoped services by `yield*`; `Items` is an app service (a repository).
const apiHandler = (id: string, kind: number, conflict: boolean): string => {
  switch (kind) {
    case 0:
      return `Effect.gen(function* () {
    const user = yield* CurrentUser
    const tenant = yield* Tenant
    const log = yield* Log
    yield* log.info("${id}")
    const item = yield* (yield* Items).get(user.id)
    if (item === undefined) return yield* new ItemNotFound({ id: user.id })
    return HttpServerResponse.jsonUnsafe({ route: "${id}", user: user.id, tenant: tenant.id, item: item.title })
  })`
    case 1:
      return `Effect.gen(function* () {
    const member = yield* Member
    const quota = yield* Quota
    const locale = yield* Locale
    return HttpServerResponse.jsonUnsafe({ route: "${id}", role: member.role, remaining: quota.remaining, locale: locale.tag })
  })`
    case 2:
      return `(request) =>
    Effect.gen(function* () {
      const requestId = yield* ReqId
      const session = yield* Session
      const user = yield* CurrentUser
      return HttpServerResponse.jsonUnsafe({
        route: "${id}",
        url: request.url,
        requestId: requestId.id,
        session: session.userId ?? null,
        user: user.name
      })
    })`
    case 3:
      return `Effect.gen(function* () {
    const tenant = yield* Tenant
    const locale = yield* Locale
    const log = yield* Log
    const item = yield* (yield* Items).get(tenant.id)
    if (item === undefined) return yield* new ${conflict ? "Conflict" : "ItemNotFound"}({ id: tenant.id })
    yield* log.info(\`${id} \${locale.tag}\`)
    return HttpServerResponse.jsonUnsafe({ route: "${id}", item: item.id })
  })`
    default:
      return `Effect.gen(function* () {
    const member = yield* Member
    const tenant = yield* Tenant
    const requestId = yield* ReqId
    const quota = yield* Quota
    return HttpServerResponse.jsonUnsafe({
      route: "${id}",
      member: member.id,
      tenant: tenant.id,
      requestId: requestId.id,
      remaining: quota.remaining
    })
  })`
  }
}

const publicHandler = (id: string, kind: number): string => {
  switch (kind) {
    case 0:
      return `Effect.gen(function* () {
    const requestId = yield* ReqId
    const locale = yield* Locale
    return HttpServerResponse.jsonUnsafe({ route: "${id}", requestId: requestId.id, locale: locale.tag })
  })`
    case 1:
      return `Effect.gen(function* () {
    const session = yield* Session
    const log = yield* Log
    yield* log.info("${id}")
    return HttpServerResponse.jsonUnsafe({ route: "${id}", signedIn: session.userId !== undefined })
  })`
    default:
      return `HttpServerResponse.text("${id}")`
  }
}

const model = (spec: Spec): ReadonlyArray<GroupModel> => {
  const groups: Array<GroupModel> = []
  const base = Math.floor(spec.routes / spec.groups)
  const extra = spec.routes % spec.groups
  for (let g = 0; g < spec.groups; g++) {
    const count = base + (g < extra ? 1 : 0)
    const isPublic = g === 0
    const name = isPublic ? "pub" : `g${pad(g)}`
    const prefix = isPublic ? "/public" : `/g${pad(g)}`
    // Every fourth API group has a route raising Conflict (kind 3 needs at least 4 routes).
    const mapsConflict = !isPublic && g % 4 === 0 && count >= 4
    const routes: Array<RouteModel> = []
    for (let j = 0; j < count; j++) {
      const method = isPublic ? "GET" : methods[(j + g) % methods.length]!
      const path = j % 2 === 0 ? `/r${j}/:id` : `/r${j}`
      const id = `${name}.r${j}`
      routes.push({
        name: `r${j}`,
        method,
        path,
        fullPath: isPublic ? `${prefix}${path}` : `/api${prefix}${path}`,
        handler: isPublic ? publicHandler(id, j % 3) : apiHandler(id, j % 5, mapsConflict)
      })
    }
    if (isPublic && spec.probe !== undefined) {
      routes.push(
        spec.probe === "missing-service"
          ? {
              name: "probe",
              method: "GET",
              path: "/probe",
              fullPath: "/public/probe",
              // CurrentUser is provided under /api only: this must not compile.
              handler: `Effect.gen(function* () {
    const user = yield* CurrentUser
    return HttpServerResponse.jsonUnsafe({ user: user.id })
  })`
            }
          : {
              name: "probe",
              method: "GET",
              path: "/probe",
              fullPath: "/public/probe",
              // Compiles on its own, but it is public and not in `except`: requireEverywhere must refuse it.
              handler: `HttpServerResponse.text("probe")`
            }
      )
    }
    groups.push({ name, prefix, isPublic, mapsConflict, routes })
  }
  return groups
}

const header = (spec: Spec) => `// Generated by bench/types/generate.ts (${appName(spec)}); do not edit.\n`

// ---------------------------------------------------------------------------------------------------
// Strata

const strataServices = `import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import { HttpError, Middleware } from "@strata/core"

export interface User {
  readonly id: string
  readonly name: string
  readonly role: "admin" | "member" | "guest"
  readonly tenantId: string
}

export class ReqId extends Middleware.Service<ReqId, { readonly id: string }>()("bench/ReqId") {}
export class Log extends Middleware.Service<Log, { readonly info: (message: string) => Effect.Effect<void> }>()(
  "bench/Log"
) {}
export class Session extends Middleware.Service<Session, { readonly userId: string | undefined }>()(
  "bench/Session"
) {}
export class CurrentUser extends Middleware.Service<CurrentUser, User>()("bench/CurrentUser") {}
export class Member extends Middleware.Service<Member, User & { readonly role: "admin" | "member" }>()(
  "bench/Member"
) {}
export class Tenant extends Middleware.Service<Tenant, { readonly id: string }>()("bench/Tenant") {}
export class Locale extends Middleware.Service<Locale, { readonly tag: string }>()("bench/Locale") {}
export class Quota extends Middleware.Service<Quota, { readonly remaining: number }>()("bench/Quota") {}

export class Users extends Context.Service<
  Users,
  { readonly find: (id: string) => Effect.Effect<User | undefined> }
>()("bench/Users") {}
export class Items extends Context.Service<
  Items,
  { readonly get: (id: string) => Effect.Effect<{ readonly id: string; readonly title: string } | undefined> }
>()("bench/Items") {}

export class ItemNotFound extends HttpError.Class("ItemNotFound", { status: 404 })<{ readonly id: string }> {}
export class Conflict extends Data.TaggedError("Conflict")<{ readonly id: string }> {}
`

const strataMiddleware = `import * as Effect from "effect/Effect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import { HttpError, Middleware } from "@strata/core"
import { CurrentUser, Locale, Log, Member, Quota, ReqId, Session, Tenant, Users } from "./services.ts"

export const requestId = Middleware.make({
  name: "requestId",
  provides: [ReqId],
  apply: (next) =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
      Effect.provideService(next, ReqId, { id: request.headers["x-request-id"] ?? "generated" })
    )
})

export const logger = Middleware.make({
  name: "logger",
  provides: [Log],
  requires: [ReqId],
  apply: (next) =>
    Effect.flatMap(ReqId, (id) =>
      Effect.provideService(next, Log, {
        info: (message: string) => Effect.annotateLogs(Effect.logInfo(message), "requestId", id.id)
      })
    )
})

export const session = Middleware.make({
  name: "session",
  provides: [Session],
  apply: (next) =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
      Effect.provideService(next, Session, { userId: request.cookies["sid"] })
    )
})

export const auth = Middleware.make({
  name: "auth",
  provides: [CurrentUser],
  requires: [Session],
  raises: ["Unauthorized"],
  apply: (next) =>
    Effect.gen(function* () {
      const { userId } = yield* Session
      const users = yield* Users
      const user = userId === undefined ? undefined : yield* users.find(userId)
      if (user === undefined) return yield* new HttpError.Unauthorized({ challenge: 'Cookie realm="bench"' })
      return yield* Effect.provideService(next, CurrentUser, user)
    })
})

export const roleGuard = Middleware.refine({
  name: "roleGuard",
  from: CurrentUser,
  to: Member,
  raises: ["Forbidden"],
  check: (user) =>
    user.role === "guest"
      ? Effect.fail(new HttpError.Forbidden({ reason: "guest" }))
      : Effect.succeed({ ...user, role: user.role })
})

export const tenant = Middleware.make({
  name: "tenant",
  provides: [Tenant],
  requires: [CurrentUser],
  apply: (next) => Effect.flatMap(CurrentUser, (user) => Effect.provideService(next, Tenant, { id: user.tenantId }))
})

export const locale = Middleware.make({
  name: "locale",
  provides: [Locale],
  apply: (next) =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
      Effect.provideService(next, Locale, { tag: request.headers["accept-language"] ?? "en" })
    )
})

export const rateLimit = Middleware.make({
  name: "rateLimit",
  provides: [Quota],
  requires: [CurrentUser, Tenant],
  raises: ["RateLimited"],
  apply: (next) =>
    Effect.gen(function* () {
      const user = yield* CurrentUser
      const tenant = yield* Tenant
      const remaining = 100 - ((user.id.length + tenant.id.length) % 7)
      if (remaining < 0) return yield* new HttpError.RateLimited({ retryAfter: 1 })
      return yield* Effect.provideService(next, Quota, { remaining })
    })
})
`

const strataGroup = (spec: Spec, group: GroupModel): string => {
  const routes = group.routes
    .map((r) => `const ${r.name} = Route.${strataMethod[r.method]}(\n  "${r.path}",\n  ${r.handler}\n)\n`)
    .join("\n")
  const use = group.isPublic
    ? "Router.use(M.session, M.locale)"
    : "Router.use(M.roleGuard, M.tenant, M.locale, M.rateLimit)"
  const catchTags = group.mapsConflict
    ? `,\n  Router.catchTags({\n    Conflict: (e) => HttpServerResponse.jsonUnsafe({ error: "Conflict", id: e.id }, { status: 409 })\n  })`
    : ""
  return `${header(spec)}import * as Effect from "effect/Effect"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { Route, Router } from "@strata/core"
import * as M from "../middleware.ts"
import { Conflict, CurrentUser, ItemNotFound, Items, Locale, Log, Member, Quota, ReqId, Session, Tenant } from "../services.ts"

${routes}
export const ${group.name} = Router.group("${group.prefix}", [${group.routes.map((r) => r.name).join(", ")}]).pipe(
  ${use}${catchTags}
)
`
}

const strataApp = (spec: Spec, groups: ReadonlyArray<GroupModel>): string => {
  const api = groups.filter((g) => !g.isPublic)
  const pub = groups.find((g) => g.isPublic)
  const except = (pub?.routes ?? [])
    .filter((r) => !(spec.probe === "unprotected-route" && r.name === "probe"))
    .map((r) => `    "${r.method} ${r.fullPath}"`)
    .join(",\n")
  return `${header(spec)}import type * as Layer from "effect/Layer"
import type * as HttpRouter from "effect/http/HttpRouter"
import { App, Router } from "@strata/core"
import * as M from "./middleware.ts"
import { CurrentUser, type Items, type Users } from "./services.ts"
${groups.map((g) => `import { ${g.name} } from "./groups/${g.name}.ts"`).join("\n")}

const api = Router.group("/api", [${api.map((g) => g.name).join(", ")}]).pipe(Router.use(M.session, M.auth))

const root = Router.make([${pub === undefined ? "" : `${pub.name}, `}api]).pipe(Router.use(M.requestId, M.logger))

// Every route but the public ones runs a middleware that provides CurrentUser.
export const app = Router.requireEverywhere(root, CurrentUser, {
  except: [
${except}
  ]
})

// Served: every request-scoped service is provided on its path, every error has a response, and
// what is left for the app layer is the app services (declared apart, so no type parameter of the
// call can be inferred from the annotation).
const served = App.layer(app)
export const AppLive: Layer.Layer<never, never, HttpRouter.HttpRouter | Users | Items> = served
`
}

// ---------------------------------------------------------------------------------------------------
// Raw Effect 4 HttpRouter

const rawServices = `import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Effect from "effect/Effect"

export interface User {
  readonly id: string
  readonly name: string
  readonly role: "admin" | "member" | "guest"
  readonly tenantId: string
}

export class ReqId extends Context.Service<ReqId, { readonly id: string }>()("bench/ReqId") {}
export class Log extends Context.Service<Log, { readonly info: (message: string) => Effect.Effect<void> }>()(
  "bench/Log"
) {}
export class Session extends Context.Service<Session, { readonly userId: string | undefined }>()(
  "bench/Session"
) {}
export class CurrentUser extends Context.Service<CurrentUser, User>()("bench/CurrentUser") {}
export class Member extends Context.Service<Member, User & { readonly role: "admin" | "member" }>()(
  "bench/Member"
) {}
export class Tenant extends Context.Service<Tenant, { readonly id: string }>()("bench/Tenant") {}
export class Locale extends Context.Service<Locale, { readonly tag: string }>()("bench/Locale") {}
export class Quota extends Context.Service<Quota, { readonly remaining: number }>()("bench/Quota") {}

export class Users extends Context.Service<
  Users,
  { readonly find: (id: string) => Effect.Effect<User | undefined> }
>()("bench/Users") {}
export class Items extends Context.Service<
  Items,
  { readonly get: (id: string) => Effect.Effect<{ readonly id: string; readonly title: string } | undefined> }
>()("bench/Items") {}

export class ItemNotFound extends Data.TaggedError("ItemNotFound")<{ readonly id: string }> {}
export class Conflict extends Data.TaggedError("Conflict")<{ readonly id: string }> {}
export class Unauthorized extends Data.TaggedError("Unauthorized")<{ readonly challenge: string }> {}
export class Forbidden extends Data.TaggedError("Forbidden")<{ readonly reason: string }> {}
export class RateLimited extends Data.TaggedError("RateLimited")<{ readonly retryAfter: number }> {}
`

const rawMiddleware = `import * as Effect from "effect/Effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import type * as Types from "effect/Types"
import {
  Conflict,
  CurrentUser,
  Forbidden,
  Locale,
  Log,
  Member,
  Quota,
  RateLimited,
  ReqId,
  Session,
  Tenant,
  Unauthorized,
  Users
} from "./services.ts"

export const RequestIdMw = HttpRouter.middleware<{ provides: ReqId }>()((effect) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    Effect.provideService(effect, ReqId, { id: request.headers["x-request-id"] ?? "generated" })
  )
)

export const LoggerMw = HttpRouter.middleware<{ provides: Log }>()((effect) =>
  Effect.flatMap(ReqId, (id) =>
    Effect.provideService(effect, Log, {
      info: (message: string) => Effect.annotateLogs(Effect.logInfo(message), "requestId", id.id)
    })
  )
)

export const SessionMw = HttpRouter.middleware<{ provides: Session }>()((effect) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    Effect.provideService(effect, Session, { userId: request.cookies["sid"] })
  )
)

// Reading the app service Users per request would leave it in the middleware's requirements, and
// such a middleware has no layer: it is read once, when the layer is built.
export const AuthMw = HttpRouter.middleware<{ provides: CurrentUser }>()(
  Effect.map(Users, (users) => (effect) =>
    Effect.gen(function* () {
      const { userId } = yield* Session
      const user = userId === undefined ? undefined : yield* users.find(userId)
      if (user === undefined) return yield* new Unauthorized({ challenge: 'Cookie realm="bench"' })
      return yield* Effect.provideService(effect, CurrentUser, user)
    })
  )
)

export const RoleGuardMw = HttpRouter.middleware<{ provides: Member }>()((effect) =>
  Effect.gen(function* () {
    const user = yield* CurrentUser
    if (user.role === "guest") return yield* new Forbidden({ reason: "guest" })
    return yield* Effect.provideService(effect, Member, { ...user, role: user.role })
  })
)

export const TenantMw = HttpRouter.middleware<{ provides: Tenant }>()((effect) =>
  Effect.flatMap(CurrentUser, (user) => Effect.provideService(effect, Tenant, { id: user.tenantId }))
)

export const LocaleMw = HttpRouter.middleware<{ provides: Locale }>()((effect) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    Effect.provideService(effect, Locale, { tag: request.headers["accept-language"] ?? "en" })
  )
)

export const RateLimitMw = HttpRouter.middleware<{ provides: Quota }>()((effect) =>
  Effect.gen(function* () {
    const user = yield* CurrentUser
    const tenant = yield* Tenant
    const remaining = 100 - ((user.id.length + tenant.id.length) % 7)
    if (remaining < 0) return yield* new RateLimited({ retryAfter: 1 })
    return yield* Effect.provideService(effect, Quota, { remaining })
  })
)

// Annotated: with the inferred parameter type (its error wrapped in NoInfer), catchTag leaves no
// error at all and the middleware is refused as handling more than it declares.
export const ConflictMw = HttpRouter.middleware<{ handles: Conflict }>()(
  (effect: Effect.Effect<HttpServerResponse.HttpServerResponse, Conflict | Types.unhandled>) =>
    Effect.catchTag(effect, "Conflict", (e) =>
      Effect.succeed(HttpServerResponse.jsonUnsafe({ error: "Conflict", id: e.id }, { status: 409 }))
    )
)

// A middleware that requires a service has no layer until combined with its provider, so each
// path gets one chain: the root's, the public group's, the API groups'.
export const RootMw = LoggerMw.combine(RequestIdMw)
export const PublicMw = LocaleMw.combine(SessionMw)
export const ApiMw = RateLimitMw.combine(LocaleMw)
  .combine(TenantMw)
  .combine(RoleGuardMw)
  .combine(AuthMw)
  .combine(SessionMw)
`

const rawGroup = (spec: Spec, group: GroupModel): string => {
  const routes = group.routes
    .map(
      (r) => `const ${r.name} = HttpRouter.add(\n  "${r.method}",\n  "${r.fullPath}",\n  ${r.handler}\n)\n`
    )
    .join("\n")
  const provide = [
    ...(group.mapsConflict ? ["Layer.provide(M.ConflictMw.layer)"] : []),
    group.isPublic ? "Layer.provide(M.PublicMw.layer)" : "Layer.provide(M.ApiMw.layer)"
  ].join(", ")
  return `${header(spec)}import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as M from "../middleware.ts"
import { Conflict, CurrentUser, ItemNotFound, Items, Locale, Log, Member, Quota, ReqId, Session, Tenant } from "../services.ts"

${routes}
export const ${group.name} = Layer.mergeAll(${group.routes.map((r) => r.name).join(", ")}).pipe(${provide})
`
}

const rawApp = (
  spec: Spec,
  groups: ReadonlyArray<GroupModel>
): string => `${header(spec)}import * as Layer from "effect/Layer"
import * as HttpRouter from "effect/http/HttpRouter"
import type * as HttpServer from "effect/http/HttpServer"
import * as M from "./middleware.ts"
import type { Items, Users } from "./services.ts"
${groups.map((g) => `import { ${g.name} } from "./groups/${g.name}.ts"`).join("\n")}

export const routes = Layer.mergeAll(${groups.map((g) => g.name).join(", ")}).pipe(Layer.provide(M.RootMw.layer))

// Served: no request-scoped service is left unprovided; what is left is the app services. Declared
// apart: annotated directly, serve's HR parameter would be inferred from the annotation and the
// check would pass whatever the routes read.
const served = HttpRouter.serve(routes)
export const AppLive: Layer.Layer<never, never, HttpServer.HttpServer | Users | Items> = served
`

// ---------------------------------------------------------------------------------------------------

// The error each probe must produce. Effect's HttpRouter alone has nothing like requireEverywhere,
// so the raw app has no unprotected-route probe.
const expectations: Record<Variant, Partial<Record<Probe, Expected>>> = {
  strata: {
    "missing-service": {
      code: 2345,
      includes: ["strata: missing request services", "bench/CurrentUser is read by a route"]
    },
    "unprotected-route": { code: 2345, includes: ["unprotected routes", "GET /public/probe"] }
  },
  raw: {
    "missing-service": { code: 2375, includes: ["Layer<never, never, CurrentUser | HttpServer"] }
  }
}

export const supports = (variant: Variant, probe: Probe): boolean =>
  expectations[variant][probe] !== undefined

/**
 * Writes one app under `outDir/<name>/` with a tsconfig that extends the repo's base config and
 * includes only that app.
 */
export const generate = (outDir: string, baseConfig: string, spec: Spec): Generated => {
  const name = appName(spec)
  const dir = join(outDir, name)
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(join(dir, "groups"), { recursive: true })
  const groups = model(spec)
  const files: Array<readonly [string, string]> =
    spec.variant === "strata"
      ? [
          ["services.ts", strataServices],
          ["middleware.ts", strataMiddleware],
          ...groups.map((g) => [`groups/${g.name}.ts`, strataGroup(spec, g)] as const),
          ["app.ts", strataApp(spec, groups)]
        ]
      : [
          ["services.ts", rawServices],
          ["middleware.ts", rawMiddleware],
          ...groups.map((g) => [`groups/${g.name}.ts`, rawGroup(spec, g)] as const),
          ["app.ts", rawApp(spec, groups)]
        ]
  for (const [file, text] of files) writeFileSync(join(dir, file), text)
  const tsconfig = join(dir, "tsconfig.json")
  writeFileSync(
    tsconfig,
    `${JSON.stringify(
      {
        extends: relative(dir, baseConfig),
        compilerOptions: { noEmit: true },
        include: ["*.ts", "groups/*.ts"]
      },
      null,
      2
    )}\n`
  )
  return {
    name,
    dir,
    tsconfig,
    files: files.length,
    routes: groups.reduce((n, g) => n + g.routes.length, 0),
    expected: spec.probe === undefined ? undefined : expectations[spec.variant][spec.probe]
  }
}
